"""The social care adapter end to end: FHIR R4 JSON over real HTTP (Python's
http.client) to the real carebridge-social, the real broker behind it, the
other agencies reading and sending with the real CLI; and the whole seam:
an HL7 A03 over MLLP to carebridge-health reaching social care as a FHIR
ServiceRequest, whose Task accept goes back to health as HL7."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hl7

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SRC, AdapterTest, referral, response, wait_for  # noqa: E402
from test_health import Mllp, a03, adt, msa, settled  # noqa: E402

NHS = "9434765919"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FHIR = "application/fhir+json"


def service_request(ident="SC-1", nhs=NHS, to="housing", **extra):
    sr = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://council.example/referrals", "value": ident}],
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "code": {"text": "housing assessment"},
        "reasonCode": [{"text": "rent arrears"}],
        "subject": {"identifier": {"system": NHS_SYSTEM, "value": nhs}},
        "performer": [{"identifier": {"value": to}}],
        "authoredOn": "2026-12-02T10:11:12Z",
    }
    sr.update(extra)
    return sr


def task(ident, status, focus, requester="health", **extra):
    t = {
        "resourceType": "Task",
        "identifier": [{"value": ident}],
        "status": status,
        "intent": "order",
        "focus": {"identifier": {"value": focus}},
        "for": {"identifier": {"system": NHS_SYSTEM, "value": NHS}},
        "requester": {"identifier": {"value": requester}},
        "authoredOn": "2026-12-02T12:00:00Z",
    }
    t.update(extra)
    return t


class Http:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, content_type=FHIR, prefer=None, accept=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        headers = dict(headers or {}, **({"Content-Type": content_type} if body is not None else {}))
        if prefer:
            headers["Prefer"] = prefer
        if accept:
            headers["Accept"] = accept
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), json.loads(data) if data else None

    def post(self, kind, resource, **kw):
        return self.request("POST", f"/fhir/{kind}", resource, **kw)

    def get(self, path, accept=None, **params):
        q = urllib.parse.urlencode(params)
        return self.request("GET", path + (f"?{q}" if q else ""), accept=accept)


def validate(documents):
    """The official FHIR R4 JSON schema over each document, offline, under Node.js
    (scripts/install-test-deps installs the validator)."""
    tool = os.path.join(SRC, "tests", "tools", "fhir", "validate.js")
    r = subprocess.run(["node", tool], input="".join(json.dumps(d) + "\n" for d in documents),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def issues(outcome, severity):
    return [i for i in outcome.get("issue", []) if i["severity"] == severity]


class Social(AdapterTest):
    def start(self, *args, broker=None):
        self.b = broker or self.broker()
        self.s = self.adapter("carebridge-social", self.b, args).start()
        self.http = Http(self.s.port)
        return self.s

    def test_a_service_request_is_created_once_with_its_flags_and_reaches_housing(self):
        self.start()
        status, headers, oo = self.http.post("ServiceRequest", service_request())
        self.assertEqual(status, 201, oo)
        self.assertEqual(headers["Location"], "/fhir/ServiceRequest/SC-1")
        self.assertEqual(oo["resourceType"], "OperationOutcome")
        codes = [c["code"] for i in issues(oo, "warning") for c in i["details"]["coding"]]
        self.assertIn("INTER_AGENCY_HANDOFF", codes)
        status, _, oo = self.http.post("ServiceRequest", service_request())  # a resend
        self.assertEqual(status, 200, oo)
        r, got = self.b.recv("housing", "--count", "2", "--timeout", "3")
        self.assertEqual([e["eventId"] for e in got], ["SC-1"])  # stored once
        self.assertEqual(got[0]["fromAgency"], "social-care")
        self.assertEqual(got[0]["referral"]["urgency"], "URGENT")
        self.assertNotIn(NHS, self.s.log())

    def test_a_post_answers_as_the_client_prefers(self):
        # FHIR clients ask for the created resource (Prefer: return=representation),
        # for nothing, or for the OperationOutcome, which alone carries the flags.
        self.start()
        status, headers, body = self.http.post("ServiceRequest", service_request("SC-REP"),
                                               prefer="return=representation, handling=lenient")
        self.assertEqual((status, headers["Location"]), (201, "/fhir/ServiceRequest/SC-REP"))
        self.assertEqual((body["resourceType"], body["id"]), ("ServiceRequest", "SC-REP"))
        self.assertIn("lastUpdated", body["meta"])
        self.assertEqual(self.http.get("/fhir/ServiceRequest/SC-REP")[2], body)  # as it is served
        status, headers, body = self.http.post("ServiceRequest", service_request("SC-MIN"), prefer="return=minimal")
        self.assertEqual((status, headers["Location"], body), (201, "/fhir/ServiceRequest/SC-MIN", None))
        self.assertNotIn("Content-Type", headers)
        status, _, body = self.http.post("ServiceRequest", service_request("SC-REP"), prefer="return=representation")
        self.assertEqual((status, body["id"]), (200, "SC-REP"))  # a resend: the one kept
        status, _, body = self.http.post("ServiceRequest", service_request("SC-OO"), prefer="return=OperationOutcome")
        self.assertEqual((status, body["resourceType"]), (201, "OperationOutcome"))
        self.assertTrue(issues(body, "warning"), body)  # the flags
        status, _, body = self.http.post("ServiceRequest", {"resourceType": "ServiceRequest"}, prefer="return=minimal")
        self.assertEqual((status, body["resourceType"]), (422, "OperationOutcome"))  # a refusal says why, always

    def test_a_conditional_create_finds_what_exists_instead_of_creating(self):
        # An integration engine retrying with a resource it built again (a new
        # authoredOn) asks If-None-Exist, and must get the one kept, not a 409.
        self.start()
        ident = "https://council.example/referrals|SC-C1"
        self.assertEqual(self.http.post("ServiceRequest", service_request("SC-C1"))[0], 201)
        again = service_request("SC-C1", authoredOn="2026-12-02T10:15:00Z")
        self.assertEqual(self.http.post("ServiceRequest", again)[0], 409)  # unconditionally: another resource
        for header in (f"identifier={ident}", "identifier=" + urllib.parse.quote(ident, safe="")):
            with self.subTest(header=header):
                status, headers, oo = self.http.post("ServiceRequest", again, headers={"If-None-Exist": header})
                self.assertEqual((status, headers["Location"]), (200, "/fhir/ServiceRequest/SC-C1"), oo)
                self.assertIn("exists already", issues(oo, "information")[0]["diagnostics"])
        status, _, oo = self.http.post("ServiceRequest", service_request("SC-C2"),
                                       headers={"If-None-Exist": "identifier=https://council.example/referrals|SC-C2"})
        self.assertEqual(status, 201, oo)  # nothing found: created
        status, _, oo = self.http.post("ServiceRequest", service_request("SC-C3"),
                                       headers={"If-None-Exist": f"patient:identifier={NHS_SYSTEM}|{NHS}"})
        self.assertEqual((status, issues(oo, "error")[0]["code"]), (412, "multiple-matches"), oo)
        for header in ("colour=blue", "identifier", "_count=1"):
            with self.subTest(header=header):
                status, _, oo = self.http.post("ServiceRequest", service_request("SC-C4"),
                                               headers={"If-None-Exist": header})
                self.assertEqual((status, issues(oo, "error")[0]["code"]), (400, "not-supported"), oo)
        for kept in ("SC-C3", "SC-C4"):
            self.assertEqual(self.http.get(f"/fhir/ServiceRequest/{kept}")[0], 404)  # refused: nothing kept
        r, got = self.b.recv("housing", "--count", "3", "--timeout", "3")
        self.assertEqual(sorted(e["eventId"] for e in got), ["SC-C1", "SC-C2"])  # each once

    def test_a_message_is_taken_as_its_focus_with_what_it_references(self):
        # NHS England's BaRS sends a referral as a message Bundle to $process-message:
        # the MessageHeader's focus is the ServiceRequest, its patient and performer
        # entries of the Bundle by urn:uuid (or a bare id, as one published example has).
        self.start("--org", "https://fhir.nhs.uk/Id/ods-organization-code|RY6=health")
        sr = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "active", "intent": "plan",
              "subject": {"reference": "urn:uuid:pat-1"}, "performer": [{"reference": "org-1"}],
              "requester": {"reference": "urn:uuid:role-1"}, "authoredOn": "2026-12-04T09:00:00Z"}
        entries = [
            {"fullUrl": "urn:uuid:hdr-1", "resource": {"resourceType": "MessageHeader", "id": "hdr-1",
                                                       "eventCoding": {"code": "servicerequest-request"},
                                                       "source": {"endpoint": "https://sender.example"},
                                                       "focus": [{"reference": "urn:uuid:sr-1"}]}},
            {"fullUrl": "urn:uuid:sr-1", "resource": sr},
            {"fullUrl": "urn:uuid:pat-1", "resource": {"resourceType": "Patient", "id": "pat-1", "identifier": [
                {"system": NHS_SYSTEM, "value": NHS}]}},
            {"fullUrl": "urn:uuid:org-1", "resource": {"resourceType": "Organization", "id": "org-1", "identifier": [
                {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RY6"}]}},
            {"fullUrl": "urn:uuid:role-1", "resource": {"resourceType": "PractitionerRole", "id": "role-1",
                                                        "organization": {"reference": "urn:uuid:org-2"}}},
            {"fullUrl": "urn:uuid:org-2", "resource": {"resourceType": "Organization", "id": "org-2",
                                                       "identifier": [{"value": "social-care"}]}},
        ]
        message = {"resourceType": "Bundle", "type": "message", "entry": entries}
        status, headers, oo = self.http.post("$process-message", message)
        self.assertEqual((status, headers.get("Location")), (201, "/fhir/ServiceRequest/sr-1"), oo)
        self.assertEqual(self.http.post("$process-message", message)[0], 200)  # a resend: kept once
        r, got = self.b.recv("health", "--count", "2", "--timeout", "3")
        self.assertEqual([(e["eventId"], e["person"]["nhsNumber"]) for e in got], [("sr-1", NHS)])
        kept = self.http.get("/fhir/ServiceRequest/sr-1")[2]
        self.assertEqual([c["resourceType"] for c in kept["contained"]], ["Patient", "Organization",
                                                                         "PractitionerRole", "Organization"])
        self.assertEqual(kept["subject"]["reference"], "#" + kept["contained"][0]["id"])
        self.assertEqual(kept["contained"][2]["organization"]["reference"], "#" + kept["contained"][3]["id"])
        rc, out = validate([kept, oo])
        self.assertEqual(rc, 0, out)

        def bad(**change):
            return dict(message, **change)
        header = entries[0]["resource"]
        cases = [
            (bad(type="transaction"), 422, "Bundle.type"),
            (bad(entry=entries[1:]), 422, "Bundle.entry[0].resource"),
            (bad(entry=[{"resource": dict(header, focus=[])}] + entries[1:]), 422, "MessageHeader.focus"),
            (bad(entry=[{"resource": dict(header, focus=[{"reference": "urn:uuid:none"}])}] + entries[1:]), 422,
             "MessageHeader.focus"),
            (bad(entry=[{"resource": dict(header, focus=[{"reference": "urn:uuid:pat-1"}])}] + entries[1:]), 422,
             "MessageHeader.focus"),
            (service_request("SC-M1"), 400, None),  # a resource, not a message
        ]
        for n, (body, want, element) in enumerate(cases):
            with self.subTest(case=n):
                status, _, oo = self.http.post("$process-message", body)
                self.assertEqual(status, want, oo)
                if element:
                    self.assertEqual(issues(oo, "error")[0]["expression"], [element], oo)
        self.assertEqual(self.http.post("ServiceRequest", service_request("SC-M2"))[0], 201)

    def test_a_search_is_answered_a_page_at_a_time_with_a_link_to_the_next(self):
        # A client pages through a busy adapter's searchset by its next links,
        # as HAPI's loadPage().next() does; it never gets all at once.
        self.start()
        for n in range(105):
            self.assertEqual(self.http.post("ServiceRequest", service_request(f"SC-P{n:03}"))[0], 201)
        bundle = self.http.get("/fhir/ServiceRequest")[2]
        self.assertEqual((bundle["total"], len(bundle["entry"])), (105, 100))  # the default page
        seen, path, pages = [], "/fhir/ServiceRequest?status=active&_count=40", []
        while path:
            status, _, page = self.http.get(path)
            self.assertEqual(status, 200, page)
            pages.append(page)
            self.assertEqual(page["total"], 105)
            seen += [e["resource"]["identifier"][0]["value"] for e in page["entry"]]
            links = {link["relation"]: link["url"] for link in page.get("link", [])}
            self.assertIn("status=active", links["self"])
            path = urllib.parse.urlsplit(links["next"])._replace(scheme="", netloc="").geturl() if "next" in links \
                else None
        self.assertEqual(len(pages), 3)
        self.assertEqual(seen, [f"SC-P{n:03}" for n in range(105)])  # each once, in order
        count_only = self.http.get("/fhir/ServiceRequest", _count="0")[2]
        self.assertEqual((count_only["total"], count_only.get("entry", [])), (105, []))
        self.assertEqual(len(self.http.get("/fhir/ServiceRequest", _count="5000")[2]["entry"]), 105)  # cut to 1000
        for bad in ({"_count": "lots"}, {"_offset": "-1"}):
            with self.subTest(query=bad):
                self.assertEqual(self.http.get("/fhir/ServiceRequest", **bad)[0], 400)
        rc, out = validate(pages + [count_only])
        self.assertEqual(rc, 0, out)

    def test_formats_are_negotiated_as_fhir_clients_ask(self):
        # HAPI's client asks for XML and JSON alike, and for DSTU2's types; with an
        # encoding set it adds _format to every request. Only JSON is served here.
        self.start()
        hapi = ("application/fhir+xml;q=1.0, application/fhir+json;q=1.0, application/xml+fhir;q=0.9, "
                "application/json+fhir;q=0.9")
        status, _, oo = self.http.post("ServiceRequest", service_request("SC-F1"), content_type="application/json+fhir",
                                       accept=hapi)
        self.assertEqual(status, 201, oo)
        for accept, params in ((None, {"_format": "json"}), ("application/fhir+xml", {"_format": "json"}),
                               ("*/*", {}), ("text/html, application/*;q=0.2", {}),
                               (None, {"_format": "application/fhir+json"})):
            with self.subTest(accept=accept, params=params):
                status, headers, body = self.http.get("/fhir/ServiceRequest/SC-F1", accept=accept, **params)
                self.assertEqual((status, body["id"]), (200, "SC-F1"))
                self.assertTrue(headers["Content-Type"].startswith("application/fhir+json"))
        for accept, params in (("application/fhir+xml", {}), ("application/fhir+json;q=0, application/xml", {}),
                               (None, {"_format": "xml"}), ("application/fhir+json", {"_format": "application/fhir+xml"})):
            with self.subTest(accept=accept, params=params):
                status, _, oo = self.http.get("/fhir/ServiceRequest/SC-F1", accept=accept, **params)
                self.assertEqual(status, 406, oo)
                self.assertEqual(issues(oo, "error")[0]["code"], "not-supported")
        status, _, oo = self.http.post("ServiceRequest", service_request("SC-F2"), accept="application/fhir+xml")
        self.assertEqual(status, 406, oo)
        self.assertEqual(self.http.get("/fhir/ServiceRequest/SC-F2")[0], 404)  # nothing kept that was refused
        status, _, body = self.http.post("ServiceRequest", service_request("SC-F3"), accept="application/fhir+xml",
                                         prefer="return=minimal")
        self.assertEqual((status, body), (201, None))  # no body: nothing to be in the wrong format
        status, _, oo = self.http.post("ServiceRequest", service_request("SC-F4"), content_type="application/fhir+xml")
        self.assertEqual(status, 415, oo)

    def test_each_bad_request_gets_its_status_and_the_element_and_a_good_one_follows(self):
        self.start("--max-body", "4096")
        unresolved = service_request("SC-X", subject={"reference": "Patient/123"})  # nothing to resolve it by
        cases = [
            ("ServiceRequest", "this is not json", FHIR, 400, None),
            ("ServiceRequest", {"resourceType": "Patient"}, FHIR, 400, None),
            ("ServiceRequest", unresolved, FHIR, 422, "ServiceRequest.subject"),
            ("ServiceRequest", service_request("SC-D", status="draft"), FHIR, 422, "ServiceRequest.status"),
            ("Task", task("T-D", "in-progress", "SC-1"), FHIR, 422, "Task.status"),
            ("ServiceRequest", service_request("SC-B", note=[{"text": "x" * 5000}]), FHIR, 413, None),
            ("ServiceRequest", json.dumps(service_request("SC-T")), "text/plain", 415, None),
            ("ServiceRequest", service_request("SC-1", reasonCode=[{"text": "other"}]), FHIR, 409, "identifier"),
        ]
        self.assertEqual(self.http.post("ServiceRequest", service_request("SC-1"))[0], 201)
        for n, (kind, body, ctype, want, element) in enumerate(cases):
            with self.subTest(case=n):
                status, _, oo = self.http.post(kind, body, content_type=ctype)
                self.assertEqual(status, want, oo)
                self.assertEqual(oo["resourceType"], "OperationOutcome")
                err = issues(oo, "error")
                self.assertTrue(err and err[0]["diagnostics"], oo)
                if element:
                    self.assertEqual(err[0]["expression"], [element], oo)
                status, _, oo = self.http.post("ServiceRequest", service_request(f"SC-GOOD-{n}"))
                self.assertEqual(status, 201, oo)

    def test_search_and_read_serve_what_was_posted_and_delivered(self):
        self.start()
        self.assertEqual(self.http.post("ServiceRequest", service_request("SC-1"))[0], 201)
        self.assertEqual(self.http.post("ServiceRequest", service_request("SC-2", nhs="9999999484"))[0], 201)
        r = self.b.send("health", [referral("hx-ref-1", to=("social-care",))])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        def served(**q):
            status, _, bundle = self.http.get("/fhir/ServiceRequest", **q)
            self.assertEqual(status, 200, bundle)
            self.assertEqual((bundle["resourceType"], bundle["type"]), ("Bundle", "searchset"))
            return sorted(e["resource"]["id"] for e in bundle.get("entry", []))

        wait_for(lambda: "hx-ref-1" in served(), 10, "the delivered referral served")
        self.assertEqual(served(), ["SC-1", "SC-2", "hx-ref-1"])
        self.assertEqual(served(**{"patient:identifier": f"{NHS_SYSTEM}|{NHS}"}), ["SC-1", "hx-ref-1"])
        self.assertEqual(served(**{"subject:identifier": "9999999484"}), ["SC-2"])
        # identifier is the resource's own, as FHIR defines it (how a client finds what it posted)
        self.assertEqual(served(identifier="SC-1"), ["SC-1"])
        self.assertEqual(served(identifier="urn:carebridge:event-id|hx-ref-1"), ["hx-ref-1"])
        self.assertEqual(served(identifier=NHS), [])  # not the patient's
        self.assertEqual(served(_id="SC-2,hx-ref-1"), ["SC-2", "hx-ref-1"])
        self.assertEqual(served(status="revoked"), [])
        self.assertEqual(served(_lastUpdated="gt2020-01-01"), ["SC-1", "SC-2", "hx-ref-1"])
        self.assertEqual(served(_lastUpdated="lt2020-01-01"), [])
        status, _, sr = self.http.get("/fhir/ServiceRequest/hx-ref-1")
        self.assertEqual((status, sr["resourceType"], sr["status"]), (200, "ServiceRequest", "active"))
        self.assertEqual(self.http.get("/fhir/ServiceRequest/hx-ref")[0], 404)  # a prefix is not an id
        self.assertEqual(self.http.get("/fhir/ServiceRequest", _lastUpdated="yesterday")[0], 400)
        status, _, cs = self.http.get("/fhir/metadata")
        self.assertEqual((status, cs["resourceType"], cs["fhirVersion"]), (200, "CapabilityStatement", "4.0.1"))
        self.assertEqual({r["type"]: r.get("conditionalCreate", False) for r in cs["rest"][0]["resource"]},
                         {"ServiceRequest": True, "Task": True, "Encounter": False})
        self.assertEqual([o["name"] for o in cs["rest"][0]["operation"]], ["process-message"])

    def test_a_task_naming_only_a_served_referral_answers_its_sender(self):
        # A case system's Task often carries just its status, its own id and
        # the focus: the referral served here says who sent it, about whom.
        self.start()
        r = self.b.send("health", [referral("hx:ref:77", to=("social-care",))])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        served = {}

        def found():
            status, _, bundle = self.http.get("/fhir/ServiceRequest")
            served.update({e["resource"]["identifier"][0]["value"]: e["resource"]["id"] for e in bundle.get("entry", [])})
            return "hx:ref:77" in served

        wait_for(found, 10, "the delivered referral served")
        fhir_id = served["hx:ref:77"]  # its id is a hash: ':' is not a FHIR id character
        self.assertNotEqual(fhir_id, "hx:ref:77")
        task = {"resourceType": "Task", "id": "case-task-1", "status": "accepted", "intent": "order",
                "lastModified": "2026-12-03T09:30:00Z", "focus": {"reference": f"ServiceRequest/{fhir_id}"}}
        status, _, oo = self.http.post("Task", task)
        self.assertEqual(status, 201, oo)
        r, got = self.b.recv("health", "--count", "1", "--timeout", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual((got[0]["correlationId"], got[0]["response"]["status"]), ("hx:ref:77", "ACCEPTED"))
        self.assertEqual(got[0]["person"]["nhsNumber"], NHS)
        # by basedOn and an absolute URL, as some case systems send it: the same referral
        based = {k: v for k, v in task.items() if k != "focus"}
        based.update(id="case-task-3", status="completed",
                     basedOn=[{"reference": f"http://127.0.0.1:{self.s.port}/fhir/ServiceRequest/{fhir_id}/_history/1"}])
        status, _, oo = self.http.post("Task", based)
        self.assertEqual(status, 201, oo)
        r, got = self.b.recv("health", "--count", "1", "--timeout", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual((got[0]["correlationId"], "closure" in got[0]), ("hx:ref:77", True))
        # one that names a referral not served here is refused, naming the requester
        task = dict(task, id="case-task-2", focus={"reference": "ServiceRequest/unknown-1"})
        status, _, oo = self.http.post("Task", task)
        self.assertEqual((status, issues(oo, "error")[0]["expression"]), (422, ["Task.requester"]), oo)

    def test_stopping_with_a_request_half_sent_or_answered_exits_cleanly(self):
        # SIGTERM while a connection holds a request MHD has not completed:
        # its end is reported as the server stops, after the answers owed are.
        self.start()
        half = socket.create_connection(("127.0.0.1", self.s.port))
        body = json.dumps(service_request("SC-HALF")).encode()
        half.sendall(b"POST /fhir/ServiceRequest HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
        self.assertEqual(self.http.post("ServiceRequest", service_request("SC-WHOLE"))[0], 201)
        self.assertEqual(self.s.stop(), 0, self.s.log()[-2000:])
        half.close()
        self.assertIn("stopped: 1 kept", self.s.log())

    def test_resources_taken_while_the_broker_is_down_and_by_a_killed_adapter_arrive_once(self):
        self.start("--ack-wait", "100")
        self.b.stop()
        for i in range(10):
            self.assertEqual(self.http.post("ServiceRequest", service_request(f"OUT-{i}"))[0], 201)
        self.s.kill9()
        self.b.start()
        self.s.start()
        r, got = self.b.recv("housing", "--count", "10", "--timeout", "20")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(e["eventId"] for e in got), sorted(f"OUT-{i}" for i in range(10)))
        r, more = self.b.recv("housing", "--timeout", "2")
        self.assertEqual(more, [])

    def test_the_broker_killed_mid_stream_loses_nothing_and_stores_nothing_twice(self):
        self.start("--ack-wait", "200")
        answers = []

        def post_all():
            for i in range(200):
                answers.append(self.http.post("ServiceRequest", service_request(f"K-{i}"))[0])

        t = threading.Thread(target=post_all)
        t.start()
        wait_for(lambda: len(answers) >= 40, 30, "the posts under way")
        self.b.kill9()
        wait_for(lambda: len(answers) >= 80, 30, "resources accepted while the broker is dead")
        self.b.start()
        t.join(60)
        self.assertEqual(answers, [201] * 200)
        r, got = self.b.recv("housing", "--count", "200", "--timeout", "30")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(e["eventId"] for e in got), sorted(f"K-{i}" for i in range(200)))
        r, more = self.b.recv("housing", "--timeout", "2")
        self.assertEqual(more, [])

    def test_an_a03_reaches_social_care_as_fhir_and_its_task_accept_returns_to_health_as_hl7(self):
        b = self.broker()
        health = self.adapter("carebridge-health", b).start()
        self.start(broker=b)
        c = Mllp(health.port)
        self.assertEqual(msa(c.ask(a03("E2E1", "V0042"))), ("AA", "E2E1"))
        c.close()
        discharge_id = "hl7:RXH:visit:V0042:discharge"

        def found():
            _, _, bundle = self.http.get("/fhir/ServiceRequest", **{"patient:identifier": f"{NHS_SYSTEM}|{NHS}"})
            return [e["resource"] for e in bundle.get("entry", [])
                    if e["resource"]["identifier"][0]["value"] == discharge_id]

        sr = wait_for(found, 15, "the discharge served as a ServiceRequest")[0]
        self.assertEqual(sr["category"][0]["text"], "discharge")
        self.assertEqual(sr["occurrenceDateTime"], "2026-12-03")
        status, _, oo = self.http.post("Task", task("T-ACCEPT-1", "accepted", discharge_id))
        self.assertEqual(status, 201, oo)
        outbox = os.path.join(health.data, "outbox")
        files = wait_for(lambda: sorted(f for f in os.listdir(outbox) if f.endswith(".hl7")), 15, "an HL7 file")
        with open(os.path.join(outbox, files[-1]), newline="") as f:
            msg = hl7.parse(f.read())
        self.assertEqual(str(msg.segment("MSH")[9]), "RRI^I12^RRI_I12")
        self.assertEqual(str(msg.segment("RF1")[1]), "A")
        self.assertEqual(str(msg.segment("RF1")[6]), discharge_id)
        # the PRDs RRI_I12 requires before the PID, and times that say they are UTC
        names = [str(seg[0]) for seg in msg]
        self.assertLess(names.index("PRD"), names.index("PID"), names)
        providers = [(str(p[1]).split("^")[0], str(p[2])) for p in msg.segments("PRD")]
        self.assertEqual(providers, [("RT", "social-care"), ("RP", "health")])
        self.assertTrue(str(msg.segment("MSH")[7]).endswith("+0000"), str(msg.segment("MSH")[7]))
        r, got = b.recv("housing", "--count", "1", "--timeout", "10")
        self.assertEqual(got[0]["eventId"], discharge_id)  # and housing had it too
        # The hospital moves the day: a second A03 for the visit updates what social care is served.
        c = Mllp(health.port)
        moved = a03("E2E2", "V0042").replace("|20261203135500", "|20261205100000")
        self.assertEqual(msa(c.ask(moved)), ("AA", "E2E2"))
        c.close()
        wait_for(lambda: found() and found()[0].get("occurrenceDateTime") == "2026-12-05", 15,
                 "the served ServiceRequest updated")


    def test_an_a01_is_served_as_an_encounter_and_its_a02_moves_it(self):
        b = self.broker()
        health = self.adapter("carebridge-health", b).start()
        self.start(broker=b)
        c = Mllp(health.port)
        self.assertEqual(msa(c.ask(adt("A01", "ENC1", "V77", "AMU^^^RXH|E|||C1^Doctor^Ann||||||||||||VISIT"))),
                         ("AA", "ENC1"))
        admission_id = "hl7:RXH:visit:V77:admission"

        def encounter():
            _, _, bundle = self.http.get("/fhir/Encounter", **{"patient:identifier": f"{NHS_SYSTEM}|{NHS}"})
            return [e["resource"] for e in bundle.get("entry", [])
                    if e["resource"]["identifier"][0]["value"] == admission_id]

        enc = wait_for(encounter, 15, "the admission served as an Encounter")[0]
        self.assertEqual((enc["status"], enc["class"]["code"]), ("in-progress", "IMP"))
        self.assertEqual(enc["priority"]["coding"][0]["code"], "EM")
        self.assertEqual(enc["reasonCode"][0]["text"], "Fall at home")
        self.assertEqual(enc["participant"][0]["individual"]["display"], "Ann Doctor")
        self.assertEqual(enc["location"], [{"location": {"display": "AMU (RXH)"}, "status": "active"}])
        self.assertEqual(enc["extension"], [  # PV2-9, by R5's cross-version extension
            {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate",
             "valueDateTime": "2026-12-09"}])
        self.assertEqual(msa(c.ask(adt("A02", "ENC2", "V77", "WARD7^^^RXH|E||AMU^^^RXH|||||||||||||VISIT"))),
                         ("AA", "ENC2"))
        c.close()
        moved = wait_for(lambda: [e for e in encounter() if len(e["location"]) == 2], 15, "the transfer served")[0]
        self.assertEqual(moved["location"], [{"location": {"display": "AMU (RXH)"}, "status": "completed"},
                                             {"location": {"display": "WARD7 (RXH)"}, "status": "active"}])
        self.assertEqual(self.http.get(f"/fhir/Encounter/{moved['id']}")[2]["location"], moved["location"])
        status, headers, oo = self.http.post("Encounter", moved)
        self.assertEqual((status, headers.get("Allow")), (405, "GET"), oo)
        self.assertIn("served", oo["issue"][0]["diagnostics"])
        self.assertEqual(oo["issue"][0]["code"], "not-supported")

    def test_deliveries_are_pushed_to_the_social_care_system_and_taken_on_its_2xx(self):
        answers, got = [503, 201, 400, 200], []  # the 503 tried again here, the 400 by the broker

        class Fhir(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(answers[len(got) - 1] if len(got) <= len(answers) else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Fhir)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        b = self.broker(redelivery_timeout_ms=500)
        nowhere = os.path.join(self.tmp, "never-made")
        r = subprocess.run([os.path.join(BIN, "carebridge-social"), "--push", "ftp://x", "--data", nowhere],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--push ftp://x is not an http:// or https:// URL", r.stderr)
        self.assertFalse(os.path.exists(nowhere))  # refused before anything was made on disk
        self.start("--push", f"http://127.0.0.1:{srv.server_port}/fhir/", broker=b)
        r = b.send("health", [referral("hx-push-1", to=("social-care",)), referral("hx-push-2", to=("social-care",))])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        wait_for(lambda: len(got) >= 4 and settled(b, "social-care"), 20, "both pushed and acknowledged")
        self.assertEqual([g[0] for g in got], ["/fhir/ServiceRequest/hx-push-1"] * 2 + ["/fhir/ServiceRequest/hx-push-2"] * 2)
        self.assertEqual({g[1] for g in got}, {"application/fhir+json"})
        self.assertEqual(got[-1][2]["identifier"][0]["value"], "hx-push-2")
        log = self.s.log()
        self.assertIn("hx-push-1): the server answered 503; again in 1000 ms", log)
        self.assertIn("hx-push-2): the server answered 400; the broker will deliver it again", log)
        self.assertEqual(len(got), 4)  # each taken once its 2xx came: nothing pushed after
        self.assertEqual(len(self.http.get("/fhir/ServiceRequest")[2]["entry"]), 2)  # and served here too

    def test_everything_served_is_valid_r4(self):
        self.start()
        served = []
        for body in (service_request("SC-V1"), service_request("SC-V1"), "not json", {"resourceType": "Patient"},
                     service_request("SC-V2", status="draft")):
            served.append(self.http.post("ServiceRequest", body)[2])
        served.append(self.http.post("Task", task("T-V1", "accepted", "hx-ref-v"))[2])
        served.append(self.http.post("Task", task("T-V2", "on-hold", "hx-ref-v"))[2])
        discharge = referral("hx-dis-v", to=("social-care",))
        del discharge["referral"]
        discharge["discharge"] = {"setting": "WARD7 (RXH)", "destination": "home", "plannedDate": "2026-12-04",
                                  "careNeeds": "help with washing", "outcomes": [{"statement": "be home for Christmas"}]}
        admission = referral("hx-adm-v", to=("social-care",))
        del admission["referral"]
        admission["admission"] = {"setting": "AMU (RXH)", "reason": "fall", "emergency": True,
                                  "expectedDischargeDate": "2026-12-09",
                                  "contact": {"name": "Dr Ann Doctor", "role": "attending doctor"}}
        transfer = referral("hx-adm-v2", to=("social-care",))
        del transfer["referral"]
        transfer["correlationId"] = "hx-adm-v"
        transfer["update"] = {"admission": {"setting": "WARD7 (RXH)", "previousSetting": "AMU (RXH)"},
                              "note": "transferred"}
        urgent = referral("hx-ref-v", to=("social-care",))
        urgent["referral"]["urgency"] = "EMERGENCY"
        events = [urgent, discharge, admission, transfer,
                  response("hx-ans-1", "SC-V1", "DECLINED", sender="housing", to=("social-care",), reason="full"),
                  response("hx-ans-2", "SC-V1", "INFO_REQUESTED", sender="housing", to=("social-care",),
                           requestedFields=["person.birthDate"]),
                  response("hx-ans-3", "SC-V1", "REDIRECTED", sender="housing", to=("social-care",),
                           redirectTo="voluntary")]
        for e in events:
            r = self.b.send(e["fromAgency"], [e])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        wait_for(lambda: len(self.http.get("/fhir/Task")[2].get("entry", [])) == 4, 10, "the answers served")
        wait_for(lambda: len(self.http.get("/fhir/ServiceRequest")[2].get("entry", [])) == 3, 10, "the referrals")
        wait_for(lambda: [len(e["resource"]["location"]) for e in self.http.get("/fhir/Encounter")[2].get("entry", [])]
                 == [2], 10, "the admission, moved")
        for kind in ("ServiceRequest", "Task", "Encounter"):
            bundle = self.http.get(f"/fhir/{kind}")[2]
            served.append(bundle)
            for e in bundle["entry"]:
                served.append(e["resource"])
                served.append(self.http.get(f"/fhir/{kind}/{e['resource']['id']}")[2])
        cs = self.http.get("/fhir/metadata")[2]
        self.assertEqual(cs["fhirVersion"], "4.0.1")
        # The packaged schema is R4's 4.0.0 release, whose fhirVersion list stops there;
        # 4.0.1 is R4's technical correction, with the same structures.
        served.append(dict(cs, fhirVersion="4.0.0"))
        served.append(self.http.get("/fhir/Task/none")[2])
        served.append(self.http.get("/fhir/ServiceRequest", _lastUpdated="soon")[2])
        rc, out = validate(served)
        self.assertEqual(rc, 0, out)
        self.assertIn(f"ok {len(served)}", out)
        bad = dict(served[-1], issue=[{"severity": "fatal-ish", "code": "processing"}])
        self.assertNotEqual(validate([bad])[0], 0)  # the validator can fail


if __name__ == "__main__":
    import unittest

    unittest.main()
