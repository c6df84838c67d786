"""kill -9 the broker repeatedly while a client sends 20,000 events, resending
whatever was not acknowledged. After the last restart every acknowledged event
is stored exactly once and delivered to each recipient at least once, and
its flags exist exactly once: those its own commit raised, and at most one
of each deadline, however the timer's commits were cut short."""

import json
import os
import random
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BrokerTest, ndjson, parse_send, referral, wait_for  # noqa: E402

TOTAL = 20000
KILLS = 8


class Crash(BrokerTest):
    def test_kill9_during_send_loses_and_duplicates_nothing(self):
        # Room for every event with its flags, queue entries and delivery
        # audits (about 3 KB an event here): a full store would refuse the
        # send for a reason that is not this test's.
        b = self.broker(redelivery_timeout_ms=2000, heartbeat_ms=500, map_size_mb=256)
        rng = random.Random(20261124)
        events = [referral(f"k-{i:05}", to=("social-care", "housing"), nhs=str(9000000000 + i % 97)) for i in range(TOTAL)]
        with tempfile.NamedTemporaryFile("w", dir=self.tmp, suffix=".ndjson", delete=False) as f:
            f.write(ndjson(events))
        with open(os.path.join(self.tmp, "send.out"), "w+") as sent_out, \
                open(os.path.join(self.tmp, "recv.out"), "w+") as recv_out:
            self.run_with_kills(b, rng, events, f.name, sent_out, recv_out)

    def run_with_kills(self, b, rng, events, path, sent_out, recv_out):
        # A receiver runs throughout, across the restarts, acknowledging as it prints.
        recv = b.cli_bg("recv", "--as", "social-care", "--timeout", "8", stdout=recv_out)
        send = b.cli_bg("send", "--as", "health", "--timeout", "60", "--window", "64", path, stdout=sent_out)
        kills = 0
        while kills < KILLS and send.poll() is None:
            time.sleep(rng.uniform(0.02, 0.3))
            if send.poll() is not None:
                break
            b.kill9()
            kills += 1
            b.start()
        self.assertEqual(send.wait(timeout=300), 0, "send must end with every event acknowledged")
        self.assertGreaterEqual(kills, 2, "the broker must have been killed while events were in flight")

        sent_out.seek(0)
        verdicts = parse_send(sent_out.read())
        self.assertEqual(len(verdicts), TOTAL)
        seqs = sorted(v[1] for v in verdicts.values())
        self.assertTrue(all(v[0] == "ACK" for v in verdicts.values()))
        # Stored exactly once: 20,000 distinct seqs, and the store holds 20,000 events.
        self.assertEqual(len(set(seqs)), TOTAL)
        status, agencies = b.status()
        self.assertEqual(int(status["events"]), TOTAL)
        self.assertEqual(int(status["lastSeq"]), TOTAL)
        self.assertEqual(int(agencies["housing"]["queued"]), TOTAL)

        self.assertEqual(recv.wait(timeout=120), 0)
        recv_out.seek(0)
        received = {json.loads(line)["eventId"] for line in recv_out if line.strip()}
        # The receiver found each restarted broker by itself (heartbeat, hello)
        # and got every event at least once; nothing is left queued for it.
        self.assertEqual(received, {e["eventId"] for e in events})
        _, agencies = b.status()
        self.assertNotIn("queued", agencies["social-care"])
        self.check_flags(b, events)

    def check_flags(self, b, events):
        def nhs_valid(n):
            check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(n[:9])) % 11
            return check != 10 and check % 11 == int(n[9])

        flags = {}
        for person in sorted({e["person"]["nhsNumber"] for e in events}):
            for step in b.journey(person):
                flags[step["event"]["eventId"]] = [
                    (f["type"], tuple(f["agencies"])) for f in step.get("flags", [])]
        self.assertEqual(set(flags), {e["eventId"] for e in events})
        for e in events:
            got = flags[e["eventId"]]
            raised_by_commit = sorted(t for t in got if t[0] in (
                "MISSING_INFORMATION", "INTER_AGENCY_HANDOFF", "IDENTITY_UNLINKABLE"))
            expected = sorted([("INTER_AGENCY_HANDOFF", ("social-care", "health")),
                               ("INTER_AGENCY_HANDOFF", ("housing", "health")),
                               ("MISSING_INFORMATION", ("health", "social-care", "housing"))] +
                              ([] if nhs_valid(e["person"]["nhsNumber"]) else
                               [("IDENTITY_UNLINKABLE", ("health",))]))
            self.assertEqual(raised_by_commit, expected, e["eventId"])
            deadlines = [t for t in got if t[0] in ("NOT_ACKNOWLEDGED", "NOT_ANSWERED")]
            self.assertEqual(len(deadlines), len(set(deadlines)), f"{e['eventId']}: a deadline raised twice")

    def test_sigterm_under_load_stops_promptly_and_keeps_every_ack(self):
        b = self.broker()
        events = [referral(f"t-{i:05}") for i in range(20000)]
        with tempfile.NamedTemporaryFile("w", dir=self.tmp, suffix=".ndjson", delete=False) as f:
            f.write(ndjson(events))
        with open(os.path.join(self.tmp, "send.out"), "w+") as out:
            send = b.cli_bg("send", "--as", "health", "--timeout", "3", f.name, stdout=out)
            wait_for(lambda: os.path.getsize(out.name) > 20000, 30, "some events acknowledged")
            started = time.monotonic()
            b.proc.send_signal(signal.SIGTERM)
            self.assertEqual(b.proc.wait(timeout=10), 0)
            self.assertLess(time.monotonic() - started, 5)
            send.wait(timeout=30)
            out.seek(0)
            acked = {eid for eid, v in parse_send(out.read()).items() if v[0] == "ACK"}
        self.assertGreater(len(acked), 0)
        b.start()
        steps = b.journey("9434765919")
        stored = {s["event"]["eventId"] for s in steps}
        self.assertLessEqual(acked, stored, "every event acknowledged before the stop is stored")


if __name__ == "__main__":
    import unittest
    unittest.main()
