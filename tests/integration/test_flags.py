"""The handoff flags through the real broker: each person of
../shared/domain.md followed through a realistic sequence of events with
the gaps practitioners describe, then the exact set of flags expected and no
others; and the same journey made complete and timely, which raises only its
handoffs, all resolved by the end. Times count back from now, so deadlines
have passed (or not) by the time the broker's timer runs. The timer runs when
the broker starts and then hourly here: the events are all sent, then the
broker is restarted, so no tick falls between an event and its answer."""

import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BrokerTest  # noqa: E402

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def at(hours):
    return (NOW + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(days):
    return (NOW + datetime.timedelta(days=days)).strftime("%Y-%m-%d")


def nhs_number(n):
    """The n-th valid NHS number of a range of our own (modulus 11)."""
    while True:
        stem = f"{400000000 + n:09d}"
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(stem)) % 11
        if check != 10:
            return stem + str(check % 11)
        n += 1000


def base(event_id, person, sender, to, hours):
    return {"eventId": event_id, "person": {"nhsNumber": person}, "fromAgency": sender, "toAgencies": list(to),
            "occurredAt": at(hours)}


def referral(event_id, person, sender, to, hours, complete=True, outcomes=(), **fields):
    body = {"reason": "support at home", "urgency": "ROUTINE", "consent": "GIVEN",
            "contact": {"name": "duty worker", "role": "key worker"},
            "risks": [{"description": "none known"}], "communicationNeeds": ["none"],
            "outcomes": [{"statement": s} if isinstance(s, str) else s for s in outcomes]}
    body.update(fields)
    if not complete:
        for k in [k for k, v in fields.items() if v is None]:
            del body[k]
    return dict(base(event_id, person, sender, to, hours), referral={k: v for k, v in body.items() if v is not None})


def response(event_id, person, sender, answers, hours, status, **body):
    ev = base(event_id, person, sender, ["health"], hours)
    ev["correlationId"] = answers
    ev["response"] = dict(status=status, **body)
    return ev


def answer(event_id, person, sender, to, answers, hours, status, **body):
    ev = response(event_id, person, sender, answers, hours, status, **body)
    ev["toAgencies"] = [to]
    return ev


def discharge(event_id, person, to, hours, planned, **fields):
    body = {"setting": "ward 7", "destination": "own home", "plannedDate": planned, "housingStatus": "HOUSED",
            "careNeeds": "help with washing for two weeks", "medication": "as per the discharge letter"}
    body.update(fields)
    return dict(base(event_id, person, "health", to, hours), discharge={k: v for k, v in body.items() if v is not None})


def handover(event_id, person, sender, to, hours, **fields):
    body = {"newLead": to, "summary": "reablement ends; befriending continues",
            "outstandingActions": ["introduce the volunteer"]}
    body.update(fields)
    return dict(base(event_id, person, sender, [to], hours), handover={k: v for k, v in body.items() if v is not None})


OPEN, RESOLVED = "OPEN", "RESOLVED"


# Each journey: (events in the order the agencies send them, the flags
# expected as (type, eventId, the agency that must act, status)).

def margaret(p, gaps):
    t = -96 if gaps else -3
    goals = ["walk to the bus stop with confidence", "visit friends and the shops again",
             "reach her upstairs bedroom"]
    ev = [referral("m-ref", p, "health", ["social-care"], t, outcomes=goals,
                   communicationNeeds=None if gaps else ["easy-read information"]),
          answer("m-ack", p, "social-care", "health", "m-ref", t + 0.2, "ACKNOWLEDGED"),
          answer("m-acc", p, "social-care", "health", "m-ref", t + 1, "ACCEPTED"),
          discharge("m-dis", p, ["social-care", "voluntary"], t + 1.5 if not gaps else t + 24,
                    day(-1) if gaps else day(3),
                    dependencies=[{"description": "bed moved downstairs", "owner": "housing",
                                   "confirmed": not gaps}],
                    outcomes=[{"statement": g} for g in (goals[:2] if gaps else goals)]),
          answer("m-dacc", p, "social-care", "health", "m-dis", t + 2 if not gaps else t + 25, "ACCEPTED")]
    if not gaps:
        ev += [answer("m-vack", p, "voluntary", "health", "m-dis", t + 2.1, "ACKNOWLEDGED"),
               answer("m-vacc", p, "voluntary", "health", "m-dis", t + 2.2, "ACCEPTED")]
        return ev, {("INTER_AGENCY_HANDOFF", "m-ref", "social-care", RESOLVED),
                    ("INTER_AGENCY_HANDOFF", "m-dis", "social-care", RESOLVED),
                    ("INTER_AGENCY_HANDOFF", "m-dis", "voluntary", RESOLVED)}
    return ev, {("INTER_AGENCY_HANDOFF", "m-ref", "social-care", RESOLVED),
                ("MISSING_INFORMATION", "m-ref", "health", OPEN),
                ("INTER_AGENCY_HANDOFF", "m-dis", "social-care", RESOLVED),
                ("INTER_AGENCY_HANDOFF", "m-dis", "voluntary", OPEN),
                ("OUTCOMES_NOT_CARRIED", "m-dis", "health", OPEN),
                ("NOT_ACKNOWLEDGED", "m-dis", "voluntary", OPEN),
                ("NOT_ANSWERED", "m-dis", "voluntary", OPEN),
                ("DISCHARGE_AT_RISK", "m-dis", "health", OPEN),     # the bed, a day before
                ("DISCHARGE_AT_RISK", "m-dis", "voluntary", OPEN)}  # not accepted by the date


def iqbal(p, gaps):
    t = -30
    ev = [discharge("i-dis", p, ["housing", "social-care"], t, day(2), housingStatus="SUPPORTED_ACCOMMODATION",
                    outcomes=[{"statement": "go out to the shops again"}]),
          answer("i-hack", p, "housing", "health", "i-dis", t + 0.5, "ACKNOWLEDGED"),
          answer("i-hacc", p, "housing", "health", "i-dis", t + 1, "ACCEPTED"),
          answer("i-sacc", p, "social-care", "health", "i-dis", t + 1, "ACCEPTED"),
          # The home-from-hospital social worker learns of the abuse.
          referral("i-ref", p, "social-care", ["housing"], t + 2, requestedService="anti-social behaviour team",
                   reason="racial abuse from neighbours' children; she no longer leaves the complex",
                   outcomes=[] if gaps else ["feel safe going out", "go out to the shops again"])]
    if gaps:
        ev += [answer("i-rack", p, "housing", "social-care", "i-ref", t + 9, "ACKNOWLEDGED"),
               answer("i-rdec", p, "housing", "social-care", "i-ref", t + 10, "DECLINED",
                      reason="not a tenancy matter")]
        return ev, {("INTER_AGENCY_HANDOFF", "i-dis", "housing", RESOLVED),
                    ("INTER_AGENCY_HANDOFF", "i-dis", "social-care", RESOLVED),
                    ("INTER_AGENCY_HANDOFF", "i-ref", "housing", OPEN),      # declined, never accepted
                    ("NO_PERSON_OUTCOMES", "i-ref", "social-care", OPEN),
                    ("NOT_ACKNOWLEDGED", "i-ref", "housing", RESOLVED)}      # 7 h, answered late
    ev += [answer("i-racc", p, "housing", "social-care", "i-ref", t + 3, "ACCEPTED")]
    return ev, {("INTER_AGENCY_HANDOFF", "i-dis", "housing", RESOLVED),
                ("INTER_AGENCY_HANDOFF", "i-dis", "social-care", RESOLVED),
                ("INTER_AGENCY_HANDOFF", "i-ref", "housing", RESOLVED)}


def david(p, gaps):
    t = -80 if gaps else -4
    ev = [referral("d-ref", p, "health", ["social-care"], t, urgency="SOON", consent="BEST_INTERESTS",
                   requestedService="care home placement",
                   reason="daughter asks for a care home; he has moderate dementia and was recently widowed",
                   outcomes=[] if gaps else ["stay in his own home", "keep going to church with his neighbours"]),
          answer("d-ack", p, "social-care", "health", "d-ref", t + 1, "ACKNOWLEDGED"),
          answer("d-info", p, "social-care", "health", "d-ref", t + 2, "INFO_REQUESTED",
                 requestedFields=["referral.outcomes"]),
          answer("d-acc", p, "social-care", "health", "d-ref", t + 60 if gaps else t + 3, "ACCEPTED")]
    if gaps:
        return ev, {("INTER_AGENCY_HANDOFF", "d-ref", "social-care", RESOLVED),
                    ("NO_PERSON_OUTCOMES", "d-ref", "health", OPEN),
                    ("NOT_ANSWERED", "d-ref", "social-care", RESOLVED)}     # decided after 60 h
    return ev, {("INTER_AGENCY_HANDOFF", "d-ref", "social-care", RESOLVED)}


def rosie(p, gaps):
    t = -50
    ev = [referral("r-ref", p, "housing", ["voluntary"], t, reason="£1,200 rent arrears after a benefit overpayment",
                   requestedService="debt advice", outcomes=["keep her home for her two children"])]
    if not gaps:
        ev += [answer("r-acc", p, "voluntary", "housing", "r-ref", t + 1, "ACCEPTED")]
        return ev, {("INTER_AGENCY_HANDOFF", "r-ref", "voluntary", RESOLVED)}
    ev += [answer("r-red", p, "voluntary", "housing", "r-ref", t + 1, "REDIRECTED", redirectTo="social-care",
                  reason="arrears need a homelessness assessment"),
           referral("r-ref2", p, "housing", ["social-care"], t + 2, reason="eviction action ahead",
                    outcomes=["keep her home for her two children"]),
           answer("r-red2", p, "social-care", "housing", "r-ref2", t + 3, "REDIRECTED", redirectTo="housing",
                  reason="a housing matter")]
    return ev, {("INTER_AGENCY_HANDOFF", "r-ref", "voluntary", OPEN),
                ("INTER_AGENCY_HANDOFF", "r-ref2", "social-care", OPEN),
                ("BOUNCED", "r-red2", "housing", OPEN)}                      # passed back to housing


def moira(p, gaps):
    t = -40
    goals = [{"statement": "feel safe at home", "ref": "o-safe"},
             {"statement": "see people I choose", "ref": "o-people"}]
    ev = [referral("mo-ref", p, "health", ["social-care"], t, reason="frequent falls; rapid response avoided admission",
                   outcomes=goals),
          answer("mo-ack", p, "social-care", "health", "mo-ref", t + 0.5, "ACKNOWLEDGED"),
          answer("mo-acc", p, "social-care", "health", "mo-ref", t + 1, "ACCEPTED"),
          handover("mo-hand", p, "social-care", "voluntary", t + 10,
                   outstandingActions=None if gaps else ["introduce the befriender"],
                   outcomesToSustain=goals[:1] if gaps else goals),
          answer("mo-vack", p, "voluntary", "social-care", "mo-hand", t + 11, "ACKNOWLEDGED"),
          answer("mo-vacc", p, "voluntary", "social-care", "mo-hand", t + 12, "ACCEPTED")]
    expected = {("INTER_AGENCY_HANDOFF", "mo-ref", "social-care", RESOLVED),
                ("INTER_AGENCY_HANDOFF", "mo-hand", "voluntary", RESOLVED)}
    if gaps:
        expected |= {("MISSING_INFORMATION", "mo-hand", "social-care", OPEN),
                     ("OUTCOMES_NOT_CARRIED", "mo-hand", "social-care", OPEN)}
    return ev, expected


def tariq(p, gaps):
    t = -30
    missing = {"careNeeds": None, "medication": None, "housingStatus": None} if gaps else {}
    ev = [discharge("t-dis", p, ["social-care", "housing"], t, day(2), outcomes=[{"statement": "stay independent"}],
                    **missing),
          answer("t-hack", p, "housing", "health", "t-dis", t + 1, "ACKNOWLEDGED")]
    if gaps:
        ev += [answer("t-dec", p, "social-care", "health", "t-dis", t + 1, "DECLINED",
                      reason="he refuses paid carers"),
               answer("t-hacc", p, "housing", "health", "t-dis", t + 2, "ACCEPTED")]
        return ev, {("INTER_AGENCY_HANDOFF", "t-dis", "social-care", OPEN),
                    ("INTER_AGENCY_HANDOFF", "t-dis", "housing", RESOLVED),
                    ("MISSING_INFORMATION", "t-dis", "health", OPEN),
                    ("DECLINED_WITHOUT_ALTERNATIVE", "t-dec", "health", OPEN)}
    ev += [answer("t-sacc", p, "social-care", "health", "t-dis", t + 1, "ACCEPTED",
                  note="a Punjabi-speaking worker will visit; he wants no paid carers"),
           answer("t-hacc", p, "housing", "health", "t-dis", t + 2, "ACCEPTED")]
    return ev, {("INTER_AGENCY_HANDOFF", "t-dis", "social-care", RESOLVED),
                ("INTER_AGENCY_HANDOFF", "t-dis", "housing", RESOLVED)}


def wednesday(p, gaps):
    """The detox unit: home on Wednesday, but the doctor who signs it off does
    not work Wednesdays (domain.md, information not passed on)."""
    t = -6
    ev = [discharge("w-dis", p, ["housing"], t, day(1), setting="detox unit", careNeeds=None, medication=None,
                    dependencies=[{"description": "doctor's sign-off", "owner": "health", "confirmed": not gaps}],
                    outcomes=[{"statement": "go home to my family"}]),
          answer("w-acc", p, "housing", "health", "w-dis", t + 1, "ACCEPTED")]
    expected = {("INTER_AGENCY_HANDOFF", "w-dis", "housing", RESOLVED)}
    if gaps:
        expected.add(("DISCHARGE_AT_RISK", "w-dis", "health", OPEN))
    return ev, expected


JOURNEYS = [margaret, iqbal, david, rosie, moira, tariq, wednesday]


def restart_and_tick(b):
    """Stop and start the broker: its timer runs as it starts."""
    assert b.stop() == 0
    b.start()
    before = None
    for _ in range(50):  # until two looks agree: the tick has committed
        now = b.flags()
        if now == before:
            return
        before = now
        time.sleep(0.2)


def seen(flags):
    return {(f["type"], f["eventIds"][0], f["agencies"][0], f["status"]) for f in flags}


class Flags(BrokerTest):
    def send_all(self, b, events):
        for ev in events:
            r = b.send(ev["fromAgency"], [ev])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def follow(self, gaps):
        b = self.broker(args=["--flag-tick", "3600"])
        people = {}
        for i, journey in enumerate(JOURNEYS):
            p = nhs_number(i + (0 if gaps else 100))
            events, expected = journey(p, gaps)
            self.send_all(b, events)
            people[journey.__name__] = (p, expected)
        restart_and_tick(b)
        for name, (p, expected) in people.items():
            with self.subTest(person=name):
                got = seen(b.flags("--person", p))
                self.assertEqual(got, expected, f"{name}: extra {got - expected}, missing {expected - got}")
        return b

    def test_every_person_with_the_gaps_practitioners_describe(self):
        b = self.follow(gaps=True)
        # Nothing in a flag names the person: only their pseudonym.
        for f in b.flags():
            text = json.dumps(f)
            for i in range(len(JOURNEYS)):
                self.assertNotIn(nhs_number(i), text)

    def test_every_person_complete_and_timely_raises_only_handoffs_all_resolved(self):
        b = self.follow(gaps=False)
        self.assertEqual(b.flags("--open"), [])
        self.assertEqual({f["type"] for f in b.flags()}, {"INTER_AGENCY_HANDOFF"})


class FlagsSeen(BrokerTest):
    def test_the_ack_names_what_the_event_raised(self):
        b = self.broker()
        p = nhs_number(200)
        ev = referral("a-1", p, "health", ["social-care"], -1, consent=None, complete=False, outcomes=[])
        r = b.send("health", [ev])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(),
                         "ACK a-1 seq=1 flags=MISSING_INFORMATION,INTER_AGENCY_HANDOFF,NO_PERSON_OUTCOMES")
        r = b.send("health", [referral("a-2", p, "health", ["social-care"], -1, outcomes=["stay well"])])
        self.assertEqual(r.stdout.strip(), "ACK a-2 seq=2 flags=INTER_AGENCY_HANDOFF")
        r = b.send("health", [answer("a-3", p, "health", "social-care", "a-2", 0, "ACKNOWLEDGED")])
        self.assertEqual(r.stdout.strip(), "ACK a-3 seq=3")  # no flags=: none

    def test_a_delivery_carries_the_flags_open_on_its_event(self):
        b = self.broker()
        p = nhs_number(201)
        b.send("health", [referral("dl-1", p, "health", ["social-care"], -1, consent=None, complete=False,
                                   outcomes=["stay well"])])
        r, events = b.recv("social-care", "--count", "1", "--flags")
        self.assertEqual(r.returncode, 0, r.stderr)
        # Its handoff aside: the delivery is the handoff.
        self.assertEqual([f["type"] for f in events[0]["flags"]], ["MISSING_INFORMATION"])

    def test_the_feed_publishes_each_flag_raised_and_resolved_by_agency_and_type(self):
        b = self.broker()
        p = nhs_number(202)
        with open(os.path.join(self.tmp, "tail.out"), "w") as out:
            tail = b.cli_bg("tail", "--flags", "--agency", "social-care", "--type", "INTER_AGENCY_HANDOFF",
                            "--count", "2", "--timeout", "20", stdout=out)
            time.sleep(0.5)  # subscribed before anything is raised
            b.send("health", [referral("fd-1", p, "health", ["social-care"], -1, outcomes=["stay well"])])
            b.send("social-care", [answer("fd-2", p, "social-care", "health", "fd-1", 0, "ACCEPTED")])
            tail.wait(timeout=30)
        with open(os.path.join(self.tmp, "tail.out")) as f:
            got = [json.loads(line) for line in f]
        self.assertEqual([(g["type"], g["status"]) for g in got],
                         [("INTER_AGENCY_HANDOFF", "OPEN"), ("INTER_AGENCY_HANDOFF", "RESOLVED")])

    def test_flags_filters_and_refusals(self):
        b = self.broker()
        p = nhs_number(203)
        b.send("health", [referral("fl-1", p, "health", ["housing"], -1, outcomes=[])])
        self.assertEqual({f["type"] for f in b.flags("--type", "NO_PERSON_OUTCOMES")}, {"NO_PERSON_OUTCOMES"})
        self.assertEqual(b.flags("--agency", "voluntary"), [])
        self.assertEqual(len(b.flags("--agency", "housing", "--open")), 2)
        self.assertEqual(b.flags("--since", day(2)), [])
        r = b.cli("flags", "--agency", "nobody")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNKNOWN_AGENCY", r.stderr)
        r = b.cli("flags", "--type", "LOST")
        self.assertEqual(r.returncode, 2)
        self.assertIn("'LOST' is not a flag type", r.stderr)
        text = b.cli("flags").stdout
        self.assertIn("records nothing the person wants to achieve", text)
        self.assertIn("resolves when:", text)
        self.assertIn("flag NO_PERSON_OUTCOMES OPEN", b.cli("journey", p).stdout)


class Report(BrokerTest):
    def test_the_gap_report_matches_counts_made_from_what_was_sent(self):
        b = self.broker(args=["--flag-tick", "3600"])
        sent, acks, decides = {}, {}, {}
        declined, no_alt, redirected = {}, {}, {}
        events = []
        plan = [  # (sender, recipient, ack after h, decide after h, how)
            ("health", "social-care", 0.5, 2, "ACCEPTED"),
            ("health", "social-care", 1, 30, "ACCEPTED"),
            ("health", "social-care", 3, 3, "DECLINED"),
            ("health", "housing", 6, 8, "DECLINED+ALT"),
            ("health", "housing", None, None, None),
            ("housing", "voluntary", 2, 2, "REDIRECTED"),
            ("social-care", "health", 0.25, 1, "ACCEPTED"),
        ]
        for i, (frm, to, ack, decide, how) in enumerate(plan):
            p = nhs_number(300 + i)
            rid = f"g-{i}"
            events.append(referral(rid, p, frm, [to], -100, outcomes=["stay well"]))
            key = (frm, to)
            sent[key] = sent.get(key, 0) + 1
            if ack is not None and ack != decide:
                events.append(answer(f"{rid}-a", p, to, frm, rid, -100 + ack, "ACKNOWLEDGED"))
            if how:
                status, extra = how.split("+")[0], {}
                if how == "DECLINED+ALT":
                    extra["alternative"] = "the tenancy support service"
                if status == "REDIRECTED":
                    extra["redirectTo"] = "social-care"
                events.append(answer(f"{rid}-d", p, to, frm, rid, -100 + decide, status, **extra))
                acks.setdefault(key, []).append(ack * 3600000)
                decides.setdefault(key, []).append(decide * 3600000)
                declined[key] = declined.get(key, 0) + (status == "DECLINED")
                no_alt[key] = no_alt.get(key, 0) + (how == "DECLINED")
                redirected[key] = redirected.get(key, 0) + (status == "REDIRECTED")
        for ev in events:
            self.assertEqual(b.send(ev["fromAgency"], [ev]).returncode, 0)
        restart_and_tick(b)

        def rank(values, pct):
            values = sorted(values)
            return values[max(0, -(-len(values) * pct // 100) - 1)] if values else 0

        got = {(r["from"], r["to"]): r for r in b.report()}
        self.assertEqual(set(got), set(sent))
        for key in sent:
            r = got[key]
            with self.subTest(pair=key):
                self.assertEqual(r["sent"], sent[key])
                self.assertEqual(r["ackMedianMs"], rank(acks.get(key, []), 50))
                self.assertEqual(r["ackP90Ms"], rank(acks.get(key, []), 90))
                self.assertEqual(r["decideMedianMs"], rank(decides.get(key, []), 50))
                self.assertEqual(r["decideP90Ms"], rank(decides.get(key, []), 90))
                self.assertEqual(r["declined"], declined.get(key, 0))
                self.assertEqual(r["declinedWithoutAlternative"], no_alt.get(key, 0))
                self.assertEqual(r["redirected"], redirected.get(key, 0))
        # health -> housing: one never answered, so two deadline flags and its
        # handoff stay open; the declined one's handoff stays open too.
        self.assertEqual(got[("health", "housing")]["openFlags"], 4)
        # The declined one: its handoff, and declined with no alternative.
        self.assertEqual(got[("health", "social-care")]["openFlags"], 2)
        # A period before everything: nothing.
        self.assertEqual(b.report("--until", day(-30)), [])
        text = b.cli("report").stdout
        self.assertIn("health -> social-care: 3 sent", text)
        for f in b.flags():
            self.assertNotIn(nhs_number(300), json.dumps(f))
