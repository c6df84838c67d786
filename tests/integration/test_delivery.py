"""Routed delivery through the real broker: send, ACK, receive, in order, once."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, BrokerTest, NHS, parse_send, referral, response, ndjson, wait_for  # noqa: E402


class Delivery(BrokerTest):
    def test_send_ack_then_recv(self):
        b = self.broker()
        r = b.send("health", [referral("d-1")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(parse_send(r.stdout), {"d-1": ("ACK", 1)})
        r, events = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([e["eventId"] for e in events], ["d-1"])
        self.assertEqual(events[0]["referral"]["urgency"], "URGENT")
        # The acknowledgement is the receiver's last frame, unanswered: it is
        # committed a moment after recv has gone.
        wait_for(lambda: "queued" not in b.status()[1]["social-care"], 10,  # proto3 JSON omits zero
                 "social care's queue to be empty")

    def test_more_in_flight_than_one_batch_holds_never_stalls(self):
        """Two senders keep 2,048 publishes each in flight, four batches' worth.
        The network thread stops reading while the open batch is full and must
        be woken when the store thread takes it: once, a missed wake-up left
        everything unanswered for seconds. The load tool gives up (exit 1) if
        nothing is answered for a second; resends are off, so every event is
        answered on its first send. 60,000 events and their handoff flags take
        about 60 MB, nine tenths of the harness's 64 MB map, where publishing
        stops: a map four times that holds them with room to spare."""
        b = self.broker(map_size_mb=256)
        r = subprocess.run([os.path.join(BIN, "cb-bench-load"), "--endpoint", b.endpoint, "--senders", "2",
                            "--window", "2048", "--events", "60000", "--resend-ms", "600000", "--stall-s", "1"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((out["events"], out["nacks"], out["duplicates"]), (60000, 0, 0))

    def test_offline_recipient_gets_everything_in_order_on_reconnect(self):
        b = self.broker()
        events = [referral(f"o-{i:03}", to=("housing", "social-care")) for i in range(300)]
        r = b.send("health", events)
        self.assertEqual(r.returncode, 0, r.stderr)
        _, agencies = b.status()
        self.assertEqual(agencies["housing"]["queued"], "300")
        self.assertFalse(agencies["housing"].get("connected", False))
        # A restart in between: the queue is in the store, not in memory.
        self.assertEqual(b.stop(), 0)
        b.start()
        r, got = b.recv("housing", "--count", "300", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([e["eventId"] for e in got], [e["eventId"] for e in events])
        # recv's last acknowledgements are one-way frames: the broker commits them
        # a moment after recv has gone, so the queue empties soon, not at once.
        wait_for(lambda: "queued" not in b.status()[1]["housing"], 10, "housing's queue to empty")  # JSON omits 0
        _, agencies = b.status()
        self.assertEqual(agencies["social-care"]["queued"], "300")

    def test_duplicate_is_stored_and_delivered_once(self):
        b = self.broker()
        ev = referral("dup-1")
        first = b.send("health", [ev])
        again = b.send("health", [ev, ev])
        self.assertEqual(parse_send(first.stdout)["dup-1"], ("ACK", 1))
        self.assertEqual(again.returncode, 0, again.stdout)
        self.assertEqual(again.stdout.count("ACK dup-1 seq=1 duplicate"), 2)
        s, _ = b.status()
        self.assertEqual(s["events"], "1")
        r, got = b.recv("social-care", "--timeout", "1.5")
        self.assertEqual([e["eventId"] for e in got], ["dup-1"])

    def test_same_id_different_content_is_refused_with_the_seq_it_has(self):
        b = self.broker()
        b.send("health", [referral("dup-2")])
        r = b.send("health", [referral("dup-2", reason="something else")])
        self.assertEqual(r.returncode, 1)
        verdict = parse_send(r.stdout)["dup-2"]
        self.assertEqual(verdict[:2], ("NACK", "DUPLICATE_ID"))
        self.assertIn("seq 1", verdict[2])

    def test_journey_merges_updates_and_tracks_each_handoff(self):
        b = self.broker()
        b.send("health", [referral("j-1", to=("social-care", "housing"))])
        b.send("social-care", [response("j-2", "j-1", "ACKNOWLEDGED"), response("j-3", "j-1", "ACCEPTED")])
        b.send("housing", [response("j-4", "j-1", "DECLINED", sender="housing",
                                    reason="no capacity", alternative="homelessness prevention team")])
        update = {"eventId": "j-5", "correlationId": "j-1", "person": {"nhsNumber": NHS}, "fromAgency": "health",
                  "toAgencies": ["social-care"], "occurredAt": "2026-11-20T12:00:00Z",
                  "update": {"referral": {"consent": "GIVEN"}}}
        r = b.send("health", [update])
        self.assertEqual(r.returncode, 0, r.stdout)
        b.recv("social-care", "--count", "2", "--timeout", "10")
        steps = b.journey(NHS)
        first = steps[0]
        self.assertEqual(first["event"]["eventId"], "j-1")
        self.assertEqual(first["event"]["referral"]["consent"], "GIVEN")
        self.assertEqual(first["updatedBy"], ["5"])
        handoffs = {h["agency"]: h for h in first["handoffs"]}
        self.assertEqual(handoffs["social-care"]["stage"], "ACCEPTED")
        self.assertTrue(handoffs["social-care"]["delivered"])
        self.assertEqual(handoffs["housing"]["stage"], "DECLINED")
        self.assertIn("homelessness prevention team", handoffs["housing"]["note"])
        self.assertNotIn("delivered", handoffs["housing"])
        self.assertEqual([s["event"]["eventId"] for s in steps], ["j-1", "j-2", "j-3", "j-4"])
        text = b.cli("journey", NHS)
        self.assertEqual(text.returncode, 0)
        self.assertIn("ACCEPTED", text.stdout)
        self.assertNotIn("Margaret", text.stdout)

    def test_tail_prints_the_live_feed_filtered_by_agency(self):
        b = self.broker()
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            tail = b.cli_bg("tail", "--agency", "housing", "--count", "1", "--timeout", "15", stdout=out, stderr=err)
            # A SUB socket joins asynchronously: publish until the subscriber has caught one.
            for i in range(50):
                b.send("health", [referral(f"t-{i}", to=("housing",)), referral(f"u-{i}")])
                if tail.poll() is not None:
                    break
                try:
                    tail.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
            code = tail.wait(timeout=20)
            err.seek(0)
            self.assertEqual(code, 0, err.read())
            out.seek(0)
            got = [json.loads(line) for line in out if line.strip()]
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0]["event"]["eventId"].startswith("t-"))
        self.assertIn("seq", got[0])

    def test_the_quick_start_walkthrough(self):
        b = self.broker()
        ex = os.path.join(os.environ.get("CB_SRC", "../.."), "examples", "margaret")
        for sender, name in [("health", "1-referral.ndjson")]:
            r = b.cli("send", "--as", sender, os.path.join(ex, name))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual(r.returncode, 0)
        for sender, name in [("social-care", "2-responses.ndjson"), ("health", "3-discharge.ndjson")]:
            r = b.cli("send", "--as", sender, os.path.join(ex, name))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        steps = b.journey("9434765919")
        self.assertEqual(len(steps), 4)


if __name__ == "__main__":
    import unittest
    unittest.main()
