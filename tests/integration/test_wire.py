"""Bytes from an independent encoder: Google's protobuf for Python (Debian's
python3-protobuf, the contract compiled by Debian's protoc). Whatever the
broker acknowledges is stored as protobuf's own rules read those bytes, or it
is refused with a NACK naming the field; never ACKed and stored as something else."""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import NHS, SRC, BrokerTest, field  # noqa: E402

from google.protobuf import json_format  # noqa: E402


def compile_contract():
    out = tempfile.mkdtemp(prefix="carebridge-pb2-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    subprocess.run(["protoc", f"-I{os.path.join(SRC, 'protos')}", "-I/usr/include", f"--python_out={out}",
                    os.path.join(SRC, "protos", "carebridge.proto")], check=True)
    sys.path.insert(0, out)
    import carebridge_pb2
    return carebridge_pb2


pb = compile_contract()


def publish(event, ref=0):
    return pb.Frame(ref=ref, publish=pb.Publish(event=event)).SerializeToString()


def essentials(event_id):
    return pb.Envelope(event_id=event_id, person=pb.Person(nhs_number=NHS), from_agency="health",
                       to_agencies=["social-care"])


class Wire(BrokerTest):
    def setUp(self):
        super().setUp()
        self.b = self.broker()

    def test_a_message_given_in_parts_is_stored_as_protobuf_merges_it(self):
        # Serialised messages laid end to end are one message, merged field by
        # field: the oneof body, its sub-messages and the Timestamp included.
        parts = [
            publish(essentials("parts-1"), ref=11),
            publish(pb.Envelope(referral=pb.Referral(reason="home support after a fall",
                                                     contact=pb.Contact(name="Ward 7 discharge team")))),
            publish(pb.Envelope(occurred_at={"seconds": 1763631000},
                                referral=pb.Referral(urgency=pb.Referral.URGENT, contact=pb.Contact(phone="01632"),
                                                     communication_needs=["interpreter"]))),
            publish(pb.Envelope(occurred_at={"nanos": 500000000},
                                referral=pb.Referral(communication_needs=["large print"]))),
        ]
        wire = b"".join(parts)
        expected = pb.Frame.FromString(wire).publish.event
        self.assertEqual(expected.referral.reason, "home support after a fall")  # Google's own merge
        self.assertEqual(expected.occurred_at.nanos, 500000000)

        answer, = self.b.raw(wire.hex(), agency="health")
        self.assertEqual(answer["acks"]["acks"][0]["eventId"], "parts-1", answer)
        r, got = self.b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        stored = json_format.Parse(json.dumps(got[0]), pb.Envelope())
        self.assertEqual(stored, expected, "the broker stored what protobuf reads from those bytes")

    def test_a_nul_in_any_string_is_refused_naming_the_field(self):
        cases = [
            (lambda e: setattr(e, "event_id", "nul\x00id"), "eventId"),
            (lambda e: e.person.MergeFrom(pb.Person(name="Marga\x00ret")), "person.name"),
            (lambda e: e.referral.MergeFrom(pb.Referral(reason="home\x00support")), "referral.reason"),
            (lambda e: e.referral.MergeFrom(pb.Referral(communication_needs=["ok", "\x00"])),
             "referral.communicationNeeds[1]"),
        ]
        for i, (spoil, name) in enumerate(cases):
            with self.subTest(field=name):
                event = essentials(f"nul-{i}")
                event.occurred_at.seconds = 1763631000
                event.referral.SetInParent()
                spoil(event)
                answer, = self.b.raw(publish(event, ref=20 + i).hex(), agency="health")
                self.assertEqual(answer["nack"]["code"], "INVALID_FIELD", answer)
                self.assertEqual(answer["nack"]["reason"], f"{name} contains a NUL character (U+0000)")
                self.assertEqual(answer["ref"], str(20 + i))
        s, _ = self.b.status()
        self.assertNotIn("events", s, "nothing was stored")

    def test_an_event_that_does_not_decode_is_named_as_the_event(self):
        # A Frame whose publish.event is not an Envelope: occurredAt claims
        # more bytes than it has.
        frame = pb.Frame(ref=31).SerializeToString() + field(12, field(1, b"\x0a\x01x\x32\x05\x08"))
        answer, = self.b.raw(frame.hex(), agency="health")
        self.assertEqual(answer["nack"]["code"], "DECODE_ERROR", answer)
        self.assertTrue(answer["nack"]["reason"].startswith(
            "publish.event does not decode as a carebridge.v1.Envelope: a length runs past the end"), answer)
        self.assertEqual(answer["ref"], "31")


if __name__ == "__main__":
    import unittest
    unittest.main()
