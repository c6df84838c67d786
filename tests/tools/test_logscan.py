"""The log scanner finds what it is there to find: a planted NHS number (also
grouped), a CHI number, a name and a birth date from the test data, and
passes a clean log, and a log whose only digits are masked or are not
identifiers."""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCAN = os.path.join(HERE, "logscan.py")


class LogScan(unittest.TestCase):
    def run_scan(self, lines):
        with tempfile.TemporaryDirectory() as logs, tempfile.TemporaryDirectory() as data:
            with open(os.path.join(data, "a03.hl7"), "w") as f:
                f.write("MSH|^~\\&|PAS|GH|CB|CB|20261120093000||ADT^A03|1|P|2.5.1\r"
                        "PID|1||943^^^NHS^NH||FOTHERINGAY^WINIFRED||19380412|F\r")
            with open(os.path.join(data, "patient.json"), "w") as f:
                f.write('{"resourceType": "Patient", "name": [{"family": "Quartermaine", "given": ["Ottoline"]}],'
                        ' "birthDate": "1941-02-03"}')
            os.makedirs(os.path.join(logs, "some.test"))
            with open(os.path.join(logs, "some.test", "broker-1.log"), "w") as f:
                f.write("".join(line + "\n" for line in lines))
            return subprocess.run([sys.executable, SCAN, "--values-from", data, logs],
                                  capture_output=True, text=True, timeout=60)

    def test_a_clean_log_passes(self):
        r = self.run_scan(["2026-12-04T03:39:50.840Z info event id=ref-xxxxxxxxxx type=referral from=health "
                           "to=social-care seq=17 person=p-3fa9c01b2e",
                           "2026-12-04T03:39:51.000Z info ready endpoint=tcp://127.0.0.1:5570 seq=1234567890",
                           "2026-12-04T03:39:51.000Z warn zap: refused (key fingerprint 835ff374acbacb47)",
                           # the broker's own numbers, though their digits pass a check digit by chance
                           "info event id=a type=referral seq=171 person=p-6819729006",
                           "info flag raised id=6819729006 type=MISSING_INFORMATION person=p-0536026535 seq=1"])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("5 lines in 1 log files", r.stdout)

    def test_planted_personal_data_is_found(self):
        planted = ["nack event=9434765919 code=INVALID_FIELD",        # an NHS number, whole
                   "info event id=6819729006 type=referral",           # where a pseudonym's digits would pass
                   "hello client=943 476 5919",                        # grouped as people write it
                   "person 120436 0006 came",                          # a CHI number (a date, then mod 11)
                   "contact FOTHERINGAY asked",                        # a name from PID-5
                   "born 19380412",                                    # PID-7
                   "the referral for Ottoline",                        # FHIR given
                   "dob=1941-02-03"]                                   # FHIR birthDate
        r = self.run_scan(planted)
        self.assertEqual(r.returncode, 1, r.stdout)
        found = [line for line in r.stdout.splitlines() if "broker-1.log:" in line]
        print("\n" + "\n".join(found))
        self.assertEqual([int(line.split(":")[1]) for line in found], list(range(1, len(planted) + 1)))
        for value in ("9434765919", "6819729006", "FOTHERINGAY", "Ottoline", "19380412"):
            self.assertNotIn(value, r.stdout)  # the finding is named, the value never repeated


if __name__ == "__main__":
    unittest.main()
