"""The query endpoint (broker.queries): status and journeys answered by the
query thread on a socket of its own, exactly as the main endpoint answers
them, with what only the running broker knows (connections, deliveries in
flight); a journey there holds every event acknowledged before it was asked;
anything else is refused by name, and a flood of it cannot flood the log."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import NHS, RAWFRAME, BrokerTest, field, raw_publish, referral, wait_for  # noqa: E402

REFUSALS_LOGGED_S = 20


class Queries(BrokerTest):
    def test_status_there_is_status_here_with_the_live_connections_and_deliveries(self):
        b = self.broker()
        self.assertEqual(b.send("health", [referral(f"st-{i}") for i in range(3)]).returncode, 0)
        via = ("--broker", b.queries)
        before, agencies = b.status(*via)
        self.assertEqual(before["events"], "3")
        self.assertEqual(agencies["social-care"]["queued"], "3")
        self.assertFalse(agencies["social-care"].get("connected", False))
        # A receiver that holds its deliveries: connected, with three in flight.
        with open(os.path.join(self.tmp, "recv.out"), "w") as out:
            recv = b.cli_bg("recv", "--as", "social-care", "--no-ack", "--timeout", "30", stdout=out)
        try:
            _, agencies = wait_for(lambda: (lambda st: st if st[1]["social-care"].get("inFlight") == 3 else None)(
                b.status(*via)), 10, "three deliveries in flight, seen on the query endpoint")
            self.assertTrue(agencies["social-care"]["connected"])
            main, main_agencies = b.status()
            ages = ("oldestUndeliveredMs",)  # read a few ms apart
            self.assertEqual({k: v for k, v in main_agencies["social-care"].items() if k not in ages},
                             {k: v for k, v in agencies["social-care"].items() if k not in ages})
            self.assertEqual(main["events"], "3")
        finally:
            recv.terminate()
            recv.wait(timeout=10)
        # Its goodbye is seen there too.
        wait_for(lambda: not b.status(*via)[1]["social-care"].get("connected", False), 10, "the receiver gone")

    def test_a_journey_there_holds_every_event_acknowledged_before_it_was_asked(self):
        b = self.broker()
        for i in range(15):
            r = b.send("health", [referral(f"seen-{i}")])
            self.assertEqual(r.returncode, 0, r.stderr)
            ids = [s["event"]["eventId"] for s in b.journey(NHS, "--broker", b.queries)]
            self.assertEqual(ids, [f"seen-{j}" for j in range(i + 1)])
        self.assertEqual(b.journey(NHS, "--broker", b.queries), b.journey(NHS))

    def test_a_bad_journey_request_there_is_refused_as_here(self):
        b = self.broker()
        too_long = "9" * 200
        here = b.cli("journey", too_long, "--json")
        there = b.cli("journey", too_long, "--json", "--broker", b.queries)
        self.assertNotEqual(here.returncode, 0)
        self.assertIn("journey.personId is longer than", here.stderr)
        self.assertEqual((there.returncode, there.stderr), (here.returncode, here.stderr))

    def test_anything_else_there_is_refused_by_name_and_a_flood_of_it_logged_in_bounds(self):
        b = self.broker()
        publish, = b.raw(raw_publish(7, event_id=b"q-1"), endpoint=b.queries)
        self.assertEqual(publish["ref"], "7")
        self.assertEqual(publish["nack"]["code"], "BAD_REQUEST")
        self.assertIn("the query endpoint answers status and journey requests only", publish["nack"]["reason"])
        self.assertIn("broker.endpoint", publish["nack"]["reason"])
        not_protobuf, = b.raw("ffffffff0a", endpoint=b.queries)
        self.assertEqual(not_protobuf["nack"]["code"], "DECODE_ERROR")
        heartbeat, = b.raw(field(1, 3).hex() + field(17, b"").hex(), endpoint=b.queries)
        self.assertEqual((heartbeat["ref"], heartbeat["nack"]["code"]), ("3", "BAD_REQUEST"))
        self.assertEqual(b.status()[0].get("events", "0"), "0", "nothing sent there may be stored")

        # Each is answered (one answer a frame: nothing is amplified), but the
        # log takes REFUSALS_LOGGED_S a second and a count of the rest.
        r = subprocess.run([RAWFRAME, b.queries, "--flood", "5000", raw_publish(8, event_id=b"q-2")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        flood = json.loads(r.stdout)
        self.assertEqual(flood["answers"], 5000, flood)
        time.sleep(1.1)
        b.raw(raw_publish(9, event_id=b"q-3"), endpoint=b.queries)  # the next second: the count is logged
        log = wait_for(lambda: (lambda t: t if "more refusals in that second" in t else None)(b.log()), 10,
                       "the count of refusals not logged")
        logged = log.count("nack on the query endpoint")
        self.assertLessEqual(logged, REFUSALS_LOGGED_S * (flood["seconds"] + 3) + 4, logged)
        self.assertIn("nack on the query endpoint code=BAD_REQUEST: the query endpoint answers", log)

        # Queries there and publishes on the main endpoint are served as before.
        self.assertEqual(b.send("health", [referral("after")]).returncode, 0)
        self.assertEqual(b.status("--broker", b.queries)[0]["events"], "1")


if __name__ == "__main__":
    import unittest
    unittest.main()
