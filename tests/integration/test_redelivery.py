"""A delivery never acknowledged is redelivered with backoff, parked after the
configured attempts (never dropped), shown by status, and delivered again after
replay. Heartbeats notice a receiver that has gone."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, BrokerTest, field, referral, wait_for  # noqa: E402

SLOWRECV = os.path.join(BIN, "cb-test-slowrecv")


class Redelivery(BrokerTest):
    def test_unacknowledged_delivery_is_redelivered_then_parked_then_replayed(self):
        b = self.broker(redelivery_timeout_ms=200, redelivery_max_ms=400, max_attempts=3)
        self.assertEqual(b.send("health", [referral("p-1"), referral("p-2")]).returncode, 0)
        # A receiver that never acknowledges sees each event max_attempts times.
        r, got = b.recv("social-care", "--no-ack", "--timeout", "2.5")
        ids = [e["eventId"] for e in got]
        self.assertEqual(ids.count("p-1"), 3, ids)
        self.assertEqual(ids.count("p-2"), 3, ids)
        self.assertIn("redeliver agency=social-care seq=1 attempt=2", b.log())

        s, agencies = wait_for(lambda: (lambda st: st if st[1]["social-care"].get("parked") == "2" else None)(b.status()),
                               10, "both entries parked")
        sc = agencies["social-care"]
        self.assertEqual(sc["parkedSeqs"], ["1", "2"])
        self.assertNotIn("queued", sc)
        self.assertIn("parked agency=social-care seq=1 after 3 attempts", b.log())
        self.assertEqual(sc["parkedEventIds"], ["p-1", "p-2"])
        text = b.cli("status")
        self.assertIn("parked: p-1 (seq 1), p-2 (seq 2)  (carebridge replay <eventId|seq> --to social-care)",
                      text.stdout)

        # Parked entries wait; a healthy receiver gets nothing until they are replayed.
        r, got = b.recv("social-care", "--timeout", "1")
        self.assertEqual(got, [])
        r = b.cli("replay", "p-2", "--to", "social-care")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("REPLAYED p-2 seq=2 to social-care (released from parked)", r.stdout)
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], ["p-2"])
        # Status reads committed state: recv's acknowledgement was sent as it left,
        # and may still be on its way to the store.
        sc = wait_for(lambda: (lambda a: a if "queued" not in a and "inFlight" not in a else None)(
            b.status()[1]["social-care"]), 5, "p-2's acknowledgement committed")
        self.assertEqual(sc["parked"], "1")
        # By seq, as status lists it, too.
        r = b.cli("replay", "1", "--to", "social-care")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("REPLAYED p-1 seq=1 to social-care (released from parked)", r.stdout)

    def test_replay_takes_an_event_id_before_a_seq(self):
        b = self.broker()
        b.send("health", [referral("first"), referral("1")])  # an id that is all digits: seq 2
        r = b.cli("replay", "1", "--to", "housing")
        self.assertIn("REPLAYED 1 seq=2 to housing", r.stdout)
        r = b.cli("replay", "99", "--to", "housing")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNKNOWN_EVENT: replay.eventId or replay.seq names no stored event", r.stderr)

    def test_replay_queues_a_delivered_event_again(self):
        b = self.broker()
        b.send("health", [referral("rp-1")])
        b.recv("social-care", "--count", "1", "--timeout", "10")
        r = b.cli("replay", "rp-1", "--to", "social-care")
        self.assertEqual(r.returncode, 0, r.stderr)
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], ["rp-1"])

    def test_taking_a_few_at_a_time_counts_no_attempts_against_the_rest(self):
        # Parking means an adapter kept failing on an event, not that a receiver
        # took only what it wanted: recv --count N asks for N, and says goodbye.
        b = self.broker(max_attempts=2)
        b.send("health", [referral(f"few-{i:02}") for i in range(12)])
        got = []
        for _ in range(6):
            r, events = b.recv("social-care", "--count", "2", "--timeout", "10")
            self.assertEqual(r.returncode, 0, r.stderr)
            got += [e["eventId"] for e in events]
        self.assertEqual(got, [f"few-{i:02}" for i in range(12)])
        _, agencies = b.status()
        self.assertNotIn("parked", agencies["social-care"])
        self.assertNotIn("redeliver", b.log())

    def test_a_receiver_that_says_goodbye_is_disconnected_at_once(self):
        b = self.broker()
        b.send("health", [referral("bye-1"), referral("bye-2")])
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], ["bye-1"])
        # At once: well inside the three heartbeats (6 s) after which a silent
        # connection is forgotten. Status reads committed state, and the goodbye
        # and the acknowledgement before it may still be on their way to the store.
        sc = wait_for(lambda: (lambda a: a if not a.get("connected") and "inFlight" not in a else None)(
            b.status()[1]["social-care"]), 3, "the goodbye taken")
        self.assertEqual(sc["queued"], "1")

    def test_a_receiver_that_goes_silent_is_forgotten_and_its_deliveries_redelivered(self):
        b = self.broker(heartbeat_ms=200)
        b.send("health", [referral("hb-1")])
        # A receiver killed without a goodbye: only heartbeats can tell the broker.
        with tempfile.TemporaryFile("w+") as out:
            silent = b.cli_bg("recv", "--as", "social-care", "--no-ack", stdout=out)
            wait_for(lambda: (out.seek(0), "hb-1" in out.read())[1], 10, "the delivery")
            silent.send_signal(signal.SIGKILL)
            silent.wait(timeout=10)
        self.assertTrue(b.status()[1]["social-care"].get("connected"))
        wait_for(lambda: not b.status()[1]["social-care"].get("connected"), 10, "the silent receiver to be forgotten")
        self.assertIn("connection of agency=social-care silent", b.log())
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], ["hb-1"])

    def test_an_idle_receiver_keeps_the_brokers_heartbeat_and_stays_connected(self):
        # The broker forgets a connection silent for three of its heartbeats; a
        # client that kept its own (slower) interval was dropped and said hello
        # again over and over.
        b = self.broker(heartbeat_ms=200)
        r, got = b.recv("social-care", "--timeout", "3")
        self.assertEqual((r.returncode, got), (0, []), r.stderr)
        log = b.log()
        self.assertEqual(log.count("hello agency=social-care"), 1, log)
        self.assertNotIn("silent for", log)

    def test_only_the_connection_holding_a_delivery_may_acknowledge_it(self):
        b = self.broker()
        self.assertEqual(b.send("health", [referral(f"own-{i:02}", to=("housing",)) for i in range(50)]).returncode, 0)
        # Said hello as housing, but is not receiving: it holds nothing.
        answers = b.raw(*[field(16, field(1, seq)).hex() for seq in range(1, 51)], agency="housing")
        self.assertEqual(len(answers), 50)
        for seq, a in zip(range(1, 51), answers):
            self.assertEqual(a["nack"]["code"], "NOT_IN_FLIGHT", a)
            self.assertEqual(a["nack"]["seq"], str(seq))
            self.assertIn(f"seq {seq} ", a["nack"]["reason"])
        _, agencies = b.status()
        self.assertEqual(agencies["housing"]["queued"], "50", "nothing was deleted")
        self.assertEqual(agencies["housing"]["refusedAcks"], "50", "and every refusal was counted")
        self.assertIn("from agency=housing (first seq=1) code=NOT_IN_FLIGHT", b.log())
        r, got = b.recv("housing", "--count", "50", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], [f"own-{i:02}" for i in range(50)])

    def test_parking_under_a_slow_consumer_keeps_its_window_and_honours_its_acks(self):
        # Alive but slow: it acknowledges one delivery every 60 ms, duplicates
        # included, so its deliveries time out and are parked while it holds them.
        b = self.broker(window=8, redelivery_timeout_ms=100, redelivery_max_ms=100, max_attempts=2)
        self.assertEqual(b.send("health", [referral(f"slow-{i:02}") for i in range(20)]).returncode, 0)
        r = subprocess.run([SLOWRECV, b.endpoint, "social-care", "0", "60", "20", "60"],
                           capture_output=True, text=True, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["acked"], 20, out)
        self.assertIn("parked agency=social-care", b.log(), "the timers parked under a connected consumer")
        self.assertLessEqual(out["max_held"], 8, "the window holds, whatever the timers do")
        # Status reads committed state: the last ack may still be on its way
        # to the store when the consumer exits, but it must land.
        sc = wait_for(lambda: (lambda s: s if "parked" not in s else None)(b.status()[1]["social-care"]), 5,
                      "the last acknowledged delivery to leave parked")
        self.assertNotIn("queued", sc)
        r, got = b.recv("social-care", "--timeout", "1")
        self.assertEqual(got, [], "nothing acknowledged is delivered again")

    def test_a_new_receiver_takes_over_and_gets_what_was_in_flight(self):
        b = self.broker()
        b.send("health", [referral(f"to-{i}") for i in range(5)])
        # The first receiver takes all five but acknowledges none, then goes.
        r, got = b.recv("social-care", "--no-ack", "--count", "5", "--timeout", "5")
        self.assertEqual(len(got), 5)
        start = time.monotonic()
        r, got = b.recv("social-care", "--count", "5", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], [f"to-{i}" for i in range(5)])
        self.assertLess(time.monotonic() - start, 5, "taken over at once, not after the redelivery timeout")


if __name__ == "__main__":
    import unittest
    unittest.main()
