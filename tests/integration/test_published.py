"""Messages published by others (tests/published/PROVENANCE.md says whose, and the
answer each must get) sent to the real adapters: HL7 v2 over MLLP to
carebridge-health, FHIR R4 over HTTP to carebridge-social. After each, a good
message still gets its AA, so no published quirk wedges the adapter."""

import json
import os
import sys

import hl7

sys.path.insert(0, os.path.dirname(__file__))
from harness import SRC, AdapterTest  # noqa: E402
from test_health import Mllp, a03, msa  # noqa: E402
from test_social import Http, issues  # noqa: E402

PUBLISHED = os.path.join(SRC, "tests", "published")

# file: (MSA-1, MSA-2, ERR code or None, text the answer must hold or None)
HL7 = {
    "hapi-adt-a03-empty-pv1.hl7": ("AA", "Q67084255T54052896X2", None, None),
    "hapi-ref-i12-no-patient-id.hl7": ("AE", "", "101", "PID-3 holds no patient identifier"),
    "nhs-hans-pkb-adt-a03.hl7": ("AA", "ABC0000000001", None, None),
    "nhs-hans-simhosp-adt-a01.hl7": ("AA", "5", None, None),
    "nhs-itk-adt-a01.hl7": ("AA", "1391320453338055", None, None),
    "nhs-itk-adt-a03.hl7": ("AA", "13403891320453338089", None, None),
    "uclh-emap-adt-a01.hl7": ("AA", "31644", None, None),
    "uclh-emap-adt-a02.hl7": ("AA", "32049", None, None),
    "uclh-emap-adt-a03.hl7": ("AA", "eh", None, None),
    "uclh-emap-fork-adt-a16.hl7": ("AA", "39278859", None, None),
    "uclh-emap-adt-a08.hl7": ("AR", "31644ZZZ", "201", "A08 is not mapped"),
    "nhs-wales-readme-adt-a01.hl7": ("AA", "01052901", None, None),
    "python-hl7-batch-adt-a04.hl7": ("AE", "", "100", "a batch (FHS/BHS) is not taken; send one message per MLLP"),
}

# file: (HTTP status, OperationOutcome issue code, expression); a 201 has no error
FHIR = {
    "r4-servicerequest-example.json": (422, "value", "ServiceRequest.status"),
    "r4-servicerequest-lipid.json": (422, "not-found", "ServiceRequest.subject"),
    "r4-task-example3.json": (422, "value", "Task.status"),
    "r4-task-example6.json": (422, "value", "Task.requester"),
    "ukcore-servicerequest-callbackphonenumber.json": (422, "required", "ServiceRequest.performer"),
    "nhse-frameworks-servicerequest-dpp.json": (201, None, None),
    "nhse-frameworks-task-dpp-accepted.json": (422, "required", "Task.requester"),
    "nhse-frameworks-task-dpp-requested.json": (422, "value", "Task.status"),
    "ers-r4-servicerequest-create-initial-advice-and-guidance.json": (422, "required", "ServiceRequest.performer"),
    "ers-r4-servicerequest-convert-to-referral-draft.json": (422, "value", "ServiceRequest.status"),
    "sdohcc-servicerequest-hungervitalsign.json": (422, "not-found", "ServiceRequest.subject"),
    "sdohcc-task-orderfulfillment.json": (422, "required", "Task.requester"),
    "nhsd-bars-message-999-to-cas.json": (422, "value", "ServiceRequest.performer"),
}

# The organisations the published resources name, as a deployment maps them:
# Leeds Community Healthcare (ODS RY6) is the health agency here.
ORGS = ("--org", "https://fhir.nhs.uk/Id/ods-organization-code|RY6=health")


class Published(AdapterTest):
    def test_every_published_file_is_listed(self):
        self.assertEqual(sorted(os.listdir(os.path.join(PUBLISHED, "hl7"))), sorted(HL7))
        self.assertEqual(sorted(os.listdir(os.path.join(PUBLISHED, "fhir"))), sorted(FHIR))
        with open(os.path.join(PUBLISHED, "PROVENANCE.md")) as f:
            provenance = f.read()
        for name in list(HL7) + list(FHIR):
            self.assertIn(name, provenance)

    def test_published_hl7_gets_the_answer_it_must(self):
        b = self.broker()
        h = self.adapter("carebridge-health", b).start()
        c = Mllp(h.port)
        for n, (name, (code, control, err, says)) in enumerate(sorted(HL7.items())):
            with self.subTest(file=name):
                with open(os.path.join(PUBLISHED, "hl7", name), "rb") as f:
                    c.send(f.read())
                ack = c.answer()
                self.assertEqual(msa(ack), (code, control), str(ack))
                if err:
                    text = str(ack)
                    self.assertIn(err, text)
                    self.assertIn(says, text.replace("\\S\\", "^"))
                self.assertEqual(msa(c.ask(a03(f"AFTER{n}", f"PUB{n}"))), ("AA", f"AFTER{n}"))
        c.close()
        # Every message but three (the A08, the batch, the REF with no patient id)
        # gave an event, and each good message after them one more.
        expected = len(HL7) - 3 + len(HL7)
        r, got = b.recv("social-care", "--count", str(expected + 1), "--timeout", "5")
        self.assertEqual(len(got), expected, [e["eventId"] for e in got])
        ids = {e["eventId"]: e for e in got}
        discharge = ids["hl7:UCLH:visit:123412341234:discharge"]
        self.assertEqual(discharge["person"]["nhsNumber"], "9999999999")
        self.assertEqual(discharge["discharge"]["plannedDate"], "2013-02-11")
        correlated = [e.get("correlationId") for e in got]
        self.assertIn("hl7:UCLH:visit:123412341234:discharge", correlated)  # the A16
        self.assertIn("hl7:UCLH:visit:123412341234:admission", correlated)  # the A02
        uclh = ids["hl7:UCLH:visit:123412341234:admission"]
        self.assertEqual((uclh["person"]["nhsNumber"], uclh["admission"]["expectedDischargeDate"]),
                         ("9999999999", "2013-02-11"))
        (wales,) = [e["admission"] for e in got if "admission" in e and e["eventId"].startswith("hl7:XYZHospC:")]
        self.assertEqual(wales["setting"], "W (UABH)")
        self.assertEqual(wales["reason"], "CHEST PAIN, UNSPECIFIED")
        self.assertEqual(wales["contact"], {"name": "REX MORGAN", "role": "attending doctor"})
        itk = ids["hl7:RCB:visit:2139:admission"]  # the NHS number as ^^^NHS, with no identifier type
        self.assertEqual((itk["person"]["nhsNumber"], itk["admission"]["reason"]), ("3333333333", "Stress Incontinence"))
        self.assertEqual(ids["hl7:RCB:visit:11554:discharge"]["discharge"]["plannedDate"], "2010-03-31")
        (simhosp,) = [e for e in got if e["eventId"].startswith("hl7:SFAC:")]  # NHSNBR^NHSNMBR, the second repetition
        self.assertEqual(simhosp["person"]["nhsNumber"], "2478684691")
        self.assertEqual(ids["hl7:SendingFacility:visit:V00001:discharge"]["discharge"]["plannedDate"], "2015-08-01")

    def test_published_fhir_gets_the_answer_it_must(self):
        b = self.broker()
        s = self.adapter("carebridge-social", b, ORGS).start()
        http = Http(s.port)
        for name, (status, code, expression) in sorted(FHIR.items()):
            with self.subTest(file=name):
                with open(os.path.join(PUBLISHED, "fhir", name)) as f:
                    resource = json.load(f)
                # A message (BaRS) goes to $process-message; a resource to its type.
                got, _, oo = http.post("$process-message" if resource["resourceType"] == "Bundle"
                                       else resource["resourceType"], resource)
                self.assertEqual(got, status, oo)
                err = issues(oo, "error")
                if code is None:
                    self.assertEqual(err, [], oo)
                else:
                    self.assertEqual((err[0]["code"], err[0]["expression"]), (code, [expression]), oo)
                self.assertNotIn("9449307873", json.dumps(oo))  # never a value back
        self.assertNotIn("9449307873", s.log())
        # NHS England's DPP referral names its provider by ODS code: it reaches health.
        r, got = b.recv("health", "--count", "1", "--timeout", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        ev = got[0]
        self.assertEqual(ev["eventId"], "677c4e35-3c49-4fd8-aae5-91bf63a49226")
        self.assertEqual(ev["person"]["nhsNumber"], "9378954317")
        self.assertEqual(ev["fromAgency"], "social-care")


if __name__ == "__main__":
    import unittest

    unittest.main()
