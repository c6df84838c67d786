"""Each kind of bad input gets its own NACK code and a reason naming the field,
and the broker keeps serving afterwards."""

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import BrokerTest, NHS, field, parse_send, raw_publish, referral  # noqa: E402


def without(ev, *path):
    ev = copy.deepcopy(ev)
    target = ev
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return ev


class Refusals(BrokerTest):
    def setUp(self):
        super().setUp()
        self.b = self.broker(max_event_bytes=4096)

    def assert_nack(self, agency, event, code, field_name):
        r = self.b.send(agency, [event])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        line = r.stdout.strip()
        self.assertTrue(line.startswith("NACK "), line)
        self.assertIn(f" {code}: ", line)
        self.assertIn(field_name, line)
        self.assertIn(f"code={code}", self.b.log())
        return line

    def assert_still_serving(self):
        r = self.b.send("health", [referral(f"ok-after-{self.id()}")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_envelope_essentials(self):
        ev = referral("e-1")
        for path, name in [(("eventId",), "eventId"), (("fromAgency",), "fromAgency"),
                           (("toAgencies",), "toAgencies"), (("occurredAt",), "occurredAt"),
                           (("referral",), "body"), (("person",), "person"),
                           (("person", "nhsNumber"), "person")]:
            with self.subTest(missing=name):
                self.assert_nack("health", without(ev, *path), "MISSING_FIELD", name)
        self.assert_still_serving()

    def test_unknown_agencies(self):
        self.assert_nack("health", referral("u-1", to=("social-care", "nowhere")), "UNKNOWN_AGENCY", "toAgencies[1]")
        r = self.b.send("nowhere", [referral("u-2", sender="nowhere")])
        self.assertEqual(r.returncode, 2)  # the hello itself is refused
        self.assertIn("refused hello", r.stderr)
        self.assertIn("UNKNOWN_AGENCY", r.stderr)
        self.assert_still_serving()

    def test_from_agency_must_be_the_connections_agency(self):
        self.assert_nack("housing", referral("m-1"), "AGENCY_MISMATCH", "fromAgency")
        self.assert_still_serving()

    def test_too_large(self):
        self.assert_nack("health", referral("big-1", reason="x" * 5000), "TOO_LARGE", "max_event_bytes")
        self.assert_still_serving()

    def test_invalid_field(self):
        self.assert_nack("health", referral("i" * 200), "INVALID_FIELD", "eventId")
        self.assert_nack("health", referral("i-2", to=("housing", "housing")), "INVALID_FIELD", "toAgencies[1]")
        self.assert_still_serving()

    def test_incomplete_body_and_bad_check_digit_are_admitted(self):
        ev = referral("c-1", nhs="9434765918")  # check digit fails
        ev["referral"] = {}
        r = self.b.send("health", [ev])
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_frames_no_client_library_sends(self):
        b = self.b
        not_protobuf, = b.raw("ffffffff0a", agency="health")
        self.assertEqual(not_protobuf["nack"]["code"], "DECODE_ERROR")
        bad_utf8, = b.raw(raw_publish(7, event_id=b"utf-1", reason=b"caf\xc3"), agency="health")
        self.assertEqual(bad_utf8["ref"], "7")
        self.assertEqual(bad_utf8["nack"]["code"], "INVALID_UTF8")
        self.assertEqual(bad_utf8["nack"]["eventId"], "utf-1")
        self.assertIn("referral.reason", bad_utf8["nack"]["reason"])
        no_hello, = b.raw(raw_publish(8, event_id=b"nh-1"))
        self.assertEqual(no_hello["nack"]["code"], "HELLO_REQUIRED")
        acks_frame = (field(1, 9) + field(25, field(1, field(2, 1)))).hex()  # Acks sent to the broker
        bad_request, = b.raw(acks_frame, agency="health")
        self.assertEqual(bad_request["nack"]["code"], "BAD_REQUEST")
        ok, = b.raw(raw_publish(10, event_id=b"raw-ok"), agency="health")
        self.assertEqual(ok["acks"]["acks"][0]["eventId"], "raw-ok")
        self.assertEqual(ok["acks"]["acks"][0]["ref"], "10")
        self.assert_still_serving()

    def test_unparseable_input_is_reported_by_line_and_column_and_reading_goes_on(self):
        # An object left open reports where JSON stops being JSON, and reading
        # goes on at the next line; what is not an object at all says what is.
        r = self.b.cli("send", "--as", "health", "-", input='{"eventId":\nnot json\n{"bogus":1}\n42\n')
        self.assertEqual(r.returncode, 1)
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^ERROR line 2: not valid JSON: .*\(line 2, column \d+\); each event is one JSON object$")
        self.assertEqual(lines[1], "ERROR line 3: unknown field 'bogus' in Envelope")
        self.assertEqual(lines[2], "ERROR line 4, column 1: expected '{' here: each event is one JSON object "
                                   "(NDJSON, a JSON array of objects, or objects one after another)")
        self.assertEqual(len(lines), 3)

    def test_replay_of_unknown_event(self):
        r = self.b.cli("replay", "no-such-event", "--to", "housing")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNKNOWN_EVENT", r.stderr)
        r = self.b.cli("replay", "no-such-event", "--to", "nowhere")
        self.assertIn("UNKNOWN_AGENCY", r.stderr)
        # A key LMDB could not hold is refused before it reaches the shared transaction.
        r = self.b.cli("replay", "x" * 600, "--to", "housing")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_FIELD", r.stderr)
        self.assertNotIn("commit failed", self.b.log())
        self.assert_still_serving()

    def test_sender_text_reaches_the_log_masked_and_cut(self):
        # An event id or a client name is the sender's text: it may carry an
        # NHS number, written any way people write one.
        ids = ["ref-9434765919-001", "943 476 5919 visit", "chi-1203843569", "y" * 100]
        events = [referral(eid) for eid in ids] + [referral("bad-943-476-5919", to=("nowhere",))]
        r = self.b.send("health", events)
        self.assertEqual(r.returncode, 1, r.stdout)  # the unknown agency is refused, and logged
        self.assertIn("ACK ref-9434765919-001 seq=", r.stdout, "the sender still gets its own id back")
        hello = field(10, field(1, "health") + field(2, "PAS for 9434765919 \x1b[31m"))
        self.b.raw(field(1, 1).hex() + hello.hex())
        log = self.b.log()
        for secret in ("9434765919", "943 476 5919", "943-476-5919", "1203843569", "\x1b"):
            self.assertNotIn(secret, log)
        self.assertIn("id=ref-xxxxxxxxxx-xxx ", log)
        self.assertIn("nack event=bad-xxx-xxx-xxxx ", log)
        self.assertIn("client=PAS for xxxxxxxxxx ?[31m", log)
        self.assertIn("id=" + "y" * 64 + "... ", log)

    def test_no_identifier_reaches_the_log(self):
        ev = referral("pii-1", person={"nhsNumber": NHS, "chiNumber": "0101011234", "name": "Margaret Example"})
        self.b.send("health", [ev, without(ev, "occurredAt")])
        log = self.b.log()
        self.assertIn("id=pii-1", log)
        for secret in (NHS, "0101011234", "Margaret"):
            self.assertNotIn(secret, log)
        self.assertRegex(log, r"person=p-[0-9a-f]{10}")


if __name__ == "__main__":
    import unittest
    unittest.main()
