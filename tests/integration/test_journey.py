"""Journeys that say what was said: every answer applied to the event it
answers whatever order they arrived in, answers to unseen events and from
agencies that were never sent the event shown as such, parked deliveries and
waiting times, and the text naming reasons, alternatives, requested fields,
redirects, outstanding actions and what a discharge still needs confirmed."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import NHS, BrokerTest, referral, response, wait_for  # noqa: E402


def handoffs(step):
    return {h["agency"]: h for h in step.get("handoffs", [])}


def step_of(steps, event_id):
    return next(s for s in steps if s["event"]["eventId"] == event_id)


class Journey(BrokerTest):
    def test_a_response_stored_before_the_event_it_answers_is_applied_when_it_arrives(self):
        b = self.broker()
        # Different agencies, so no order: social care's answer is stored first.
        self.assertEqual(b.send("social-care", [response("early-2", "early-1", "ACCEPTED")]).returncode, 0)
        self.assertEqual(b.send("health", [referral("early-1")]).returncode, 0)
        steps = b.journey(NHS)
        h = handoffs(step_of(steps, "early-1"))["social-care"]
        self.assertEqual(h["stage"], "ACCEPTED")
        self.assertEqual(h["responseSeq"], "1")
        self.assertNotIn("answersUnseen", step_of(steps, "early-2"))

    def test_an_answer_to_an_event_never_stored_is_shown_as_such(self):
        b = self.broker()
        b.send("social-care", [response("ghost-2", "ghost-1", "DECLINED", reason="no capacity")])
        steps = b.journey(NHS)
        self.assertTrue(step_of(steps, "ghost-2")["answersUnseen"])
        text = b.cli("journey", NHS).stdout
        self.assertIn("answers ghost-1 (an event carebridge has not seen)", text)

    def test_a_response_from_an_agency_never_sent_the_event_is_not_a_recipient(self):
        b = self.broker()
        b.send("health", [referral("nr-1")])
        b.send("housing", [response("nr-2", "nr-1", "DECLINED", sender="housing", reason="not ours")])
        h = handoffs(step_of(b.journey(NHS), "nr-1"))
        self.assertEqual(h["social-care"]["stage"], "SENT")
        self.assertTrue(h["housing"]["notARecipient"])
        self.assertEqual(h["housing"]["stage"], "DECLINED")
        text = b.cli("journey", NHS).stdout
        self.assertIn("housing      DECLINED        answered, though the event was not sent to it", text)

    def test_a_parked_delivery_says_so_with_its_attempts(self):
        b = self.broker(redelivery_timeout_ms=100, redelivery_max_ms=100, max_attempts=2)
        b.send("health", [referral("pk-1")])
        b.recv("social-care", "--no-ack", "--timeout", "1")
        wait_for(lambda: b.status()[1]["social-care"].get("parked") == "1", 10, "the delivery to be parked")
        h = handoffs(step_of(b.journey(NHS), "pk-1"))["social-care"]
        self.assertTrue(h["parked"])
        self.assertEqual(h["attempts"], 2)  # both deliveries made before it was parked
        self.assertNotIn("delivered", h)
        self.assertIn("social-care  SENT            parked (2 attempts)", b.cli("journey", NHS).stdout)

    def test_the_text_says_what_was_said_and_how_long_each_handoff_has_waited(self):
        b = self.broker()
        b.send("health", [referral("t-1", to=("social-care", "housing", "voluntary"))])
        b.send("housing", [response("t-2", "t-1", "DECLINED", sender="housing", reason="no capacity",
                                    alternative="homelessness prevention team")])
        b.send("social-care", [response("t-3", "t-1", "INFO_REQUESTED",
                                        requestedFields=["referral.whatMatters", "referral.risks"],
                                        note="what does she want from a day service?")])
        b.send("voluntary", [response("t-4", "t-1", "REDIRECTED", sender="voluntary", redirectTo="social-care",
                                      reason="befriending only")])
        discharge = {"eventId": "t-5", "person": {"nhsNumber": NHS}, "caseRef": "W7-9", "fromAgency": "health",
                     "toAgencies": ["social-care"], "occurredAt": "2026-11-24T16:00:00Z",
                     "discharge": {"setting": "ward 7", "destination": "own home", "plannedDate": "2026-11-25",
                                   "followUps": [{"agency": "social-care", "service": "reablement visits"},
                                                 {"agency": "health", "service": "district nurse", "confirmed": True}],
                                   "dependencies": [{"description": "doctor's sign-off", "owner": "health"}]}}
        handover = {"eventId": "t-6", "person": {"nhsNumber": NHS}, "fromAgency": "social-care",
                    "toAgencies": ["voluntary"], "occurredAt": "2026-11-25T10:00:00Z",
                    "handover": {"newLead": "voluntary", "outstandingActions": ["review in 3 months", "key safe"]}}
        self.assertEqual(b.send("health", [discharge]).returncode, 0)
        self.assertEqual(b.send("social-care", [handover]).returncode, 0)
        text = b.cli("journey", NHS).stdout
        for expected in [
            "[t-1] case W7-1",
            "reason: no capacity; alternative: homelessness prevention team",
            "housing      DECLINED        not yet delivered; alternative offered: homelessness prevention team; for ",
            "requested: referral.whatMatters, referral.risks; note: what does she want from a day service?",
            "redirected to social-care; reason: befriending only",
            "voluntary    REDIRECTED      not yet delivered; redirected to social-care; for ",
            "unconfirmed: follow-up reablement visits (social-care); dependency doctor's sign-off (owner health)",
            "outstanding: review in 3 months; key safe",
        ]:
            self.assertIn(expected, text)
        self.assertNotIn("of 3 follow-ups", text)
        self.assertRegex(text, r"social-care  INFO_REQUESTED  not yet delivered; information requested; for \d+[mhd]")


if __name__ == "__main__":
    import unittest
    unittest.main()
