"""`make run`'s script (scripts/run-all): the broker and the three adapters on the
embedded defaults, in a fresh directory; an A03 over MLLP reaches the social
care adapter through them; `carebridge demo` plays Margaret's discharge through
them all; SIGINT stops them all, cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SRC, BrokerTest, wait_for  # noqa: E402
from test_health import Mllp, a03  # noqa: E402


def read(path):
    with open(path) as f:
        return f.read()


class Run(BrokerTest):
    def test_make_run_starts_all_four_on_the_defaults_and_ctrl_c_stops_them(self):
        log = open(os.path.join(self.tmp, "run.log"), "w+")
        p = subprocess.Popen([os.path.join(SRC, "scripts", "run-all"), os.path.abspath(BIN)], cwd=self.tmp,
                             stdout=log, stderr=log, start_new_session=True)
        try:
            def up():
                try:
                    urllib.request.urlopen("http://127.0.0.1:8090/fhir/metadata", timeout=2).read()
                    return Mllp(2575)
                except OSError:
                    self.assertIsNone(p.poll(), read(log.name))
                    return None

            c = wait_for(up, 30, "the social and health adapters listening")
            c.close()
            # The hospital's message from a client nobody on the team wrote (python3-hl7).
            path = os.path.join(self.tmp, "a03.mllp")
            with open(path, "wb") as f:
                f.write(b"\x0b" + a03("RUN1", "V9").encode() + b"\x1c\r")
            r = subprocess.run(["mllp_send", "-p", "2575", "-f", path, "127.0.0.1"], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("MSA|AA|RUN1", r.stdout.replace("\n", "\r"))

            def served():
                with urllib.request.urlopen("http://127.0.0.1:8090/fhir/ServiceRequest", timeout=5) as r:
                    return b"hl7:RXH:visit:V9:discharge" in r.read()

            wait_for(served, 15, "the discharge served by the social care adapter")

            def in_housing_outbox():
                outbox = os.path.join(self.tmp, "var", "housing", "outbox")
                for name in os.listdir(outbox):
                    with open(os.path.join(outbox, name)) as f:
                        if json.loads(f.read()).get("eventId") == "hl7:RXH:visit:V9:discharge":
                            return True
                return False

            wait_for(in_housing_outbox, 15, "the discharge in the housing adapter's outbox, as JSON")
            demo = subprocess.run([os.path.join(BIN, "carebridge"), "demo"], cwd=self.tmp, capture_output=True,
                                  text=True, timeout=60)
            self.assertEqual(demo.returncode, 0, demo.stdout + demo.stderr)
            for said in ("MSA|AA|DEMO-A03-1", "HTTP 201", "Journey: ", "answers hl7:GENHOSP:visit:W7-2211:discharge",
                         "answers demo-sc-bed-1", "flag INTER_AGENCY_HANDOFF OPEN"):
                self.assertIn(said, demo.stdout)
            for d in ("health", "social", "housing"):
                self.assertTrue(os.path.isdir(os.path.join(self.tmp, "var", d)), d)
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(timeout=30), 0, read(log.name))
            text = read(log.name)
            for name in ("carebridge-health: stopped", "carebridge-social: stopped", "carebridge-housing: stopped"):
                self.assertIn(name, text)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            log.close()


if __name__ == "__main__":
    import unittest

    unittest.main()
