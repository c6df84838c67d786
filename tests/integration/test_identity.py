"""One person, many keys: NHS and CHI numbers as people write them are one
person, stored in one form; a number that fails its check is accepted and the
ACK says so; a person known only by a local system's id can be found."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import NHS, BrokerTest, referral, response  # noqa: E402


def ack_lines(stdout):
    return {line.split()[1]: line for line in stdout.splitlines() if line.startswith("ACK ")}


class Identity(BrokerTest):
    def setUp(self):
        super().setUp()
        self.b = self.broker()

    def test_an_nhs_number_however_written_is_one_person_stored_in_one_form(self):
        ways = ["943 476 5919", "943-476-5919", "9434765919", " 9434765919 "]
        r = self.b.send("health", [referral(f"same-{i}", nhs=n) for i, n in enumerate(ways)])
        self.assertEqual(r.returncode, 0, r.stdout)
        for query in ("9434765919", "943 476 5919", "943-476-5919"):
            with self.subTest(query=query):
                self.assertEqual(len(self.b.journey(query)), 4)
        r, got = self.b.recv("social-care", "--count", "4", "--timeout", "10")
        self.assertEqual({e["person"]["nhsNumber"] for e in got}, {NHS}, "the normalised form is what is stored")
        # The same event sent again as written another way is the same event.
        again = self.b.send("health", [referral("same-0", nhs="9434765919")])
        self.assertIn("ACK same-0 seq=1 duplicate", again.stdout)

    def test_a_number_that_fails_its_check_is_accepted_with_a_warning(self):
        events = [
            referral("w-check", nhs="9434765918"),
            referral("w-format", nhs="12345"),
            referral("w-chi-date", nhs="", person={"chiNumber": "3213011234"}),
            referral("w-chi-check", person={"chiNumber": "1203843567"}),
            referral("w-fine"),
        ]
        r = self.b.send("health", events)
        self.assertEqual(r.returncode, 0, r.stdout)
        acks = ack_lines(r.stdout)
        self.assertTrue(acks["w-check"].endswith(" warnings=person.nhsNumber:check-digit"), acks["w-check"])
        self.assertTrue(acks["w-format"].endswith(" warnings=person.nhsNumber:format"), acks["w-format"])
        self.assertTrue(acks["w-chi-date"].endswith(" warnings=person.chiNumber:date"), acks["w-chi-date"])
        self.assertTrue(acks["w-chi-check"].endswith(" warnings=person.chiNumber:check-digit"), acks["w-chi-check"])
        self.assertNotIn("warnings", acks["w-fine"])
        self.assertEqual(len(self.b.journey("9434765918")), 1, "stored and found under the number as given")

    def test_a_response_to_an_event_not_yet_seen_is_accepted_with_a_warning(self):
        r = self.b.send("social-care", [response("c-2", "c-1", "ACCEPTED", nhs="9434765918")])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertTrue(ack_lines(r.stdout)["c-2"].endswith(
            " warnings=person.nhsNumber:check-digit,correlationId:unknown"), r.stdout)
        self.b.send("health", [referral("c-1")])
        r = self.b.send("social-care", [response("c-3", "c-1", "ACCEPTED")])
        self.assertNotIn("warnings", r.stdout, "once the event it answers is stored, nothing to warn of")

    def test_a_person_known_only_by_a_local_id_is_found_by_it(self):
        tenant = {"localIds": [{"system": "housing:hms", "value": "T-20417"}]}
        r = self.b.send("housing", [referral("l-1", sender="housing", to=("social-care",), person=tenant)])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.b.send("health", [referral("l-2", nhs="9434765870")])
        r = self.b.cli("journey", "--local", "housing:hms:T-20417", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"l-1"', r.stdout)
        self.assertNotIn('"l-2"', r.stdout)
        # Several identifiers: every event stored under any of them.
        r = self.b.cli("journey", "9434765870", "--local", "housing:hms:T-20417", "--json")
        self.assertIn('"l-1"', r.stdout)
        self.assertIn('"l-2"', r.stdout)
        r = self.b.cli("journey", "--local", "housing:hms:T-99999")
        self.assertIn("No events are stored for that person.", r.stdout)

    def test_journey_without_an_identifier_prints_its_usage(self):
        r = self.b.cli("journey")
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage: carebridge journey", r.stderr)
        r = self.b.cli("journey", "--local", "no-colon")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    import unittest
    unittest.main()
