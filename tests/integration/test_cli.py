"""The command-line contract: --help and --version everywhere, exit statuses,
configuration errors that name the key, and the broker's clean stop."""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, BROKER, CLI, SRC, BrokerTest, referral  # noqa: E402


def run(*args, timeout=30, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


class Cli(BrokerTest):
    def test_help_and_version(self):
        executables = [os.path.join(BIN, name) for name in sorted(os.listdir(BIN))]
        self.assertIn(BROKER, executables)
        for exe in executables:
            with self.subTest(exe=exe):
                r = run(exe, "--help")
                self.assertEqual(r.returncode, 0)
                self.assertIn("Usage:", r.stdout)
                r = run(exe, "--version")
                self.assertEqual(r.returncode, 0)
                self.assertRegex(r.stdout, r"^[a-z-]+ \d+\.\d+\.\d+\n$")
        for cmd in ("send", "recv", "journey", "status", "replay", "tail", "flags", "report", "audit", "demo"):
            with self.subTest(cmd=cmd):
                r = run(CLI, cmd, "--help")
                self.assertEqual(r.returncode, 0)
                self.assertIn(f"Usage: carebridge {cmd}", r.stdout)

    def test_send_reads_ndjson_an_array_or_objects_one_after_another(self):
        b = self.broker()
        pretty = [json.dumps(referral(f"fmt-pretty-{i}"), indent=2) for i in range(2)]
        inputs = {
            "ndjson": "".join(json.dumps(referral(f"fmt-nd-{i}")) + "\n" for i in range(2)),
            "array": json.dumps([referral(f"fmt-arr-{i}") for i in range(2)], indent=2),
            "pasted": "\n".join(pretty) + "\n",  # the README's examples as they are
            "bom-crlf": "\ufeff" + json.dumps(referral("fmt-crlf-0")) + "\r\n" + json.dumps(referral("fmt-crlf-1")),
        }
        for name, text in inputs.items():
            with self.subTest(input=name):
                path = os.path.join(self.tmp, f"{name}.json")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                r = b.cli("send", "--as", "health", path)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stdout.count("ACK "), 2, r.stdout)
        # The README's own examples, pasted whole, send (those from health).
        with open(os.path.join(SRC, "README.md")) as f:
            readme = f.read()
        blocks = re.findall(r"```json\n(.*?)```", readme, re.S)
        health = [blk for blk in blocks if '"fromAgency": "health"' in blk]
        self.assertGreaterEqual(len(health), 3)
        r = b.cli("send", "--as", "health", "-", input="".join(health))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.count("ACK "), len(health))

    def test_tail_says_when_its_feed_agency_type_or_count_cannot_be_had(self):
        b = self.broker()
        r = b.cli("tail", "--feed", "tcp://127.0.0.1:9", "--count", "1", timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot reach the feed within 5 s; is the broker running with its feed at tcp://127.0.0.1:9?",
                      r.stderr)
        r = b.cli("tail", "--type", "referal")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--type 'referal' is not one of referral, discharge, handover, response, update, closure, "
                      "admission",
                      r.stderr)
        r = b.cli("tail", "--agency", "nowhere")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--agency 'nowhere' names no configured agency (configured: health, housing, social-care, "
                      "voluntary)", r.stderr)
        began = time.monotonic()
        r = b.cli("tail", "--agency", "housing", "--count", "2", "--timeout", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("0 of 2 events before the timeout", r.stderr)
        self.assertLess(time.monotonic() - began, 15)

    def test_an_unknown_agency_is_answered_with_the_configured_ones(self):
        b = self.broker()
        r = b.send("health", [referral("ua-1", to=("social-care", "socialcare"))])
        self.assertIn("NACK ua-1 UNKNOWN_AGENCY: toAgencies[1] names no configured agency (configured: health, "
                      "housing, social-care, voluntary)", r.stdout)
        r = b.send("nowhere", [referral("ua-2", sender="nowhere")])
        self.assertEqual(r.returncode, 2)
        self.assertIn("(configured: health, housing, social-care, voluntary)", r.stderr)

    def test_every_example_body_sends_as_its_sender(self):
        b = self.broker()
        bodies = os.path.join(SRC, "examples", "bodies")
        sent = 0
        for name in sorted(os.listdir(bodies)):
            agency = name.removesuffix(".ndjson")
            r = b.cli("send", "--as", agency, os.path.join(bodies, name))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("AGENCY_MISMATCH", r.stdout)
            sent += r.stdout.count("ACK ")
        self.assertEqual(sent, 10)

    def test_a_file_that_cannot_be_opened_says_why(self):
        r = run(CLI, "send", "--as", "health", os.path.join(self.tmp, "missing.ndjson"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.ndjson: No such file or directory", r.stderr)

    def test_usage_errors_exit_2(self):
        for args in (["nonsense"], ["send"], ["recv"], ["replay", "x"], ["send", "--as", "health", "--timeout", "-1"],
                     ["send", "--as", "health", "/no/such/file"]):
            with self.subTest(args=args):
                r = run(CLI, *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr)

    def test_no_broker_is_a_connection_error_not_a_hang(self):
        env = dict(os.environ, CAREBRIDGE_BROKER="tcp://127.0.0.1:9")
        start = time.monotonic()
        r = run(CLI, "send", "--as", "health", "--timeout", "1", "-", input='{"eventId":"x"}\n', env=env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no answer from the broker within 1 s; is the broker running at tcp://127.0.0.1:9?", r.stderr)
        for args, seconds in ((["status"], 5), (["journey", "9434765919"], 5), (["replay", "x", "--to", "housing"], 5),
                              (["recv", "--as", "housing"], 5)):
            with self.subTest(command=args[0]):
                began = time.monotonic()
                r = run(CLI, *args, env=env)
                waited = time.monotonic() - began
                self.assertEqual(r.returncode, 2)
                self.assertIn(f"carebridge {args[0]}: no answer from the broker within {seconds} s; "
                              "is the broker running at tcp://127.0.0.1:9?", r.stderr)
                self.assertGreaterEqual(waited, seconds - 0.5, "it waits the time it says")
        self.assertLess(time.monotonic() - start, 40)

    def test_bad_configuration_names_the_key_and_exits_2(self):
        path = os.path.join(self.tmp, "bad.yaml")
        for text, key in [("limits:\n  window: 0\n", "limits.window"),
                          ("limits:\n  windw: 3\n", "windw"),
                          ("agencies:\n  - id: Health\n    kind: HEALTH\n    name: x\n", "agencies[0].id"),
                          ("agencies:\n  - id: a\n    kind: HOSPITAL\n    name: x\n", "agencies[0].kind")]:
            with self.subTest(key=key):
                with open(path, "w") as f:
                    f.write(text)
                r = run(BROKER, "--config", path, "--data", os.path.join(self.tmp, "d"))
                self.assertEqual(r.returncode, 2)
                self.assertIn(key, r.stderr)
        r = run(BROKER, "--config", os.path.join(self.tmp, "missing.yaml"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.yaml", r.stderr)
        r = run(BROKER, "--bogus")
        self.assertEqual(r.returncode, 2)

    def test_embedded_defaults_are_the_shipped_file(self):
        with open(os.path.join(os.environ.get("CB_SRC", "../.."), "config", "carebridge.yaml")) as f:
            shipped = f.read()
        self.assertIn("127.0.0.1:5570", shipped)
        for agency, kind in [("health", "HEALTH"), ("housing", "HOUSING"), ("social-care", "SOCIAL_CARE"),
                             ("voluntary", "VOLUNTARY")]:
            self.assertIn(f"id: {agency}", shipped)
            self.assertIn(f"kind: {kind}", shipped)

    def test_broker_stops_cleanly_on_sigterm_and_sigint_keeping_its_data(self):
        b = self.broker()
        self.assertEqual(b.send("health", [referral("stop-1")]).returncode, 0)
        b.proc.send_signal(signal.SIGINT)
        self.assertEqual(b.proc.wait(timeout=10), 0)
        self.assertIn("store closed: last_seq=1", b.log())
        b.start()
        self.assertEqual(b.stop(), 0)
        s = b.log()
        self.assertIn("ready", s)

    def test_a_busy_port_is_a_start_error_that_creates_nothing(self):
        b = self.broker()
        data = os.path.join(self.tmp, "x")
        r = run(BROKER, "--endpoint", b.endpoint, "--feed", "tcp://127.0.0.1:*", "--queries", "tcp://127.0.0.1:*",
                "--metrics", "127.0.0.1:0", "--data", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot bind", r.stderr)
        self.assertFalse(os.path.exists(data), "a refused start must not create its store")
        # The query endpoint is bound before the store is opened too.
        r = run(BROKER, "--endpoint", "tcp://127.0.0.1:*", "--feed", "tcp://127.0.0.1:*", "--queries", b.queries,
                "--metrics", "127.0.0.1:0", "--data", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"cannot bind {b.queries}", r.stderr)
        self.assertFalse(os.path.exists(data), "a refused start must not create its store")
        # And the metrics port.
        r = run(BROKER, "--endpoint", "tcp://127.0.0.1:*", "--feed", "tcp://127.0.0.1:*", "--queries",
                "tcp://127.0.0.1:*", "--metrics", b.metrics, "--data", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"broker.metrics: cannot listen on {b.metrics}", r.stderr)
        self.assertFalse(os.path.exists(data), "a refused start must not create its store")

    def test_a_second_broker_on_a_data_directory_in_use_refuses_and_touches_nothing(self):
        b = self.broker()
        self.assertEqual(b.send("health", [referral("lock-1")]).returncode, 0)
        before = files_of(b.data)
        r = run(BROKER, "--config", b.config, "--data", b.data, "--endpoint", "tcp://127.0.0.1:*",
                "--feed", "tcp://127.0.0.1:*", "--queries", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0",
                timeout=15)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("in use", r.stderr)
        self.assertIn(b.data, r.stderr)
        self.assertIn(f"pid {b.proc.pid}", r.stderr)
        self.assertNotIn("ready", r.stderr)
        self.assertEqual(files_of(b.data), before, "the refused broker opened or wrote the store")
        # The first broker serves on, and after it stops the directory is free again.
        self.assertEqual(b.send("health", [referral("lock-2")]).returncode, 0)
        self.assertEqual(b.stop(), 0)
        b.start()
        self.assertEqual(b.status()[0]["events"], "2")

    def test_a_broker_killed_with_sigkill_leaves_no_stale_lock(self):
        b = self.broker()
        b.kill9()
        b.start()  # the kernel dropped the lock with the process
        self.assertEqual(b.status()[0].get("events", "0"), "0")


def files_of(directory):
    """Each file's size and modification time: what a process that opens the store would change."""
    return {name: (st.st_size, st.st_mtime_ns)
            for name in sorted(os.listdir(directory))
            for st in [os.stat(os.path.join(directory, name))]}


if __name__ == "__main__":
    import unittest
    unittest.main()
