"""A store that is full or fails to sync never acknowledges: full gives
STORE_FULL with nothing half-written and publishing resumes when room returns;
a failed sync gives STORE_UNAVAILABLE and never an ACK. Every ACK follows a
sync (counted with strace, since a kill -9 test cannot show a missing one)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import BrokerTest, NHS, fault_injection_env, parse_send, referral, wait_for  # noqa: E402


# LeakSanitizer cannot run under ptrace (strace) in the sanitizer build.
UNDER_STRACE = dict(env={"ASAN_OPTIONS": "detect_leaks=0"})


def fiu(broker, command):
    r = subprocess.run(["fiu-ctrl", "-f", broker.fiu_prefix, "-c", command, str(broker.proc.pid)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


class StoreFailures(BrokerTest):
    def test_full_map_refuses_publishes_keeps_everything_acked_and_resumes_with_room(self):
        b = self.broker(map_size_mb=1)
        events = [referral(f"full-{i:04}", reason="r" * 700) for i in range(1500)]
        r = b.send("health", events, "--window", "64")
        verdicts = parse_send(r.stdout)
        acked = sorted(e for e, v in verdicts.items() if v[0] == "ACK")
        full = [e for e, v in verdicts.items() if v[:2] == ("NACK", "STORE_FULL")]
        self.assertEqual(r.returncode, 1)
        self.assertGreater(len(acked), 100)
        self.assertGreater(len(full), 100)
        self.assertEqual(len(acked) + len(full), len(events), "every event got an answer")
        self.assertIn("code=STORE_FULL", b.log())

        # Nothing acknowledged was lost, nothing refused was half-written.
        s, agencies = b.status()
        self.assertEqual(int(s["events"]), len(acked))
        self.assertTrue(s["publishingPaused"])
        self.assertEqual(sorted(st["event"]["eventId"] for st in b.journey(NHS)), acked)
        # Deliveries and their acknowledgements still commit while full.
        r, got = b.recv("social-care", "--count", str(len(acked)), "--timeout", "20")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(e["eventId"] for e in got), acked)

        # Room returns (a bigger map): the refused events are accepted on resend.
        self.assertEqual(b.stop(), 0)
        with open(b.config) as f:
            cfg = f.read().replace("map_size_mb: 1\n", "map_size_mb: 16\n")
        with open(b.config, "w") as f:
            f.write(cfg)
        b.start()
        r = b.send("health", events, "--window", "64")
        self.assertEqual(r.returncode, 0, r.stdout[-500:])
        s, _ = b.status()
        self.assertEqual(int(s["events"]), len(events))

    def under_fiu(self):
        prefix = os.path.join(self.tmp, "fiu-ctrl")
        b = self.broker(env=fault_injection_env(prefix))
        b.fiu_prefix = prefix
        return b

    def test_disk_full_refuses_then_resumes_in_place(self):
        b = self.under_fiu()
        self.assertEqual(b.send("health", [referral("nospc-0")]).returncode, 0)
        for name in ("posix/io/rw/pwrite", "posix/io/rw/pwritev"):
            fiu(b, f"enable name={name},failinfo=28")
        r = b.send("health", [referral("nospc-1")])
        self.assertEqual(parse_send(r.stdout)["nospc-1"][:2], ("NACK", "STORE_FULL"))
        for name in ("posix/io/rw/pwrite", "posix/io/rw/pwritev"):
            fiu(b, f"disable name={name}")
        r = b.send("health", [referral("nospc-1")])
        self.assertEqual(parse_send(r.stdout)["nospc-1"], ("ACK", 2))

    def test_failed_sync_is_never_acknowledged(self):
        b = self.under_fiu()
        self.assertEqual(b.send("health", [referral("sync-0")]).returncode, 0)
        fiu(b, "enable name=posix/io/sync/fdatasync,failinfo=5")
        r = b.send("health", [referral(f"sync-{i}") for i in range(1, 21)])
        verdicts = parse_send(r.stdout)
        self.assertEqual(len(verdicts), 20)
        for eid, v in verdicts.items():
            self.assertEqual(v[:2], ("NACK", "STORE_UNAVAILABLE"), eid)
        self.assertNotIn("ACK sync-", r.stdout.replace("NACK", ""))
        self.assertIn("commit failed (STORE_UNAVAILABLE)", b.log())
        fiu(b, "disable name=posix/io/sync/fdatasync")
        # The broker reopened its store and serves on; the refused events were not stored.
        s, _ = b.status()
        self.assertEqual(s["events"], "1")
        r = b.send("health", [referral(f"sync-{i}") for i in range(1, 21)])
        self.assertEqual(r.returncode, 0, r.stdout)
        r, got = b.recv("social-care", "--count", "21", "--timeout", "10")
        self.assertEqual(len({e["eventId"] for e in got}), 21)

    def test_every_acknowledged_batch_was_synced(self):
        b = self.broker(**UNDER_STRACE)
        trace, attach_log = os.path.join(self.tmp, "strace.out"), os.path.join(self.tmp, "strace.err")
        with open(attach_log, "w") as err:
            strace = subprocess.Popen(["strace", "-f", "-e", "trace=fdatasync,fsync,msync", "-o", trace,
                                       "-p", str(b.proc.pid)], stderr=err)
        def attached():
            with open(attach_log) as f:
                return "attached" in f.read()
        wait_for(attached, 10, "strace to attach")
        n = 40
        r = b.send("health", [referral(f"s-{i}") for i in range(n)], "--window", "1")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(b.stop(), 0)
        strace.wait(timeout=20)
        with open(trace) as f:
            syncs = sum(1 for line in f if "sync(" in line and "= 0" in line)
        # --window 1 makes each event its own batch: at least one sync each
        # (the hello commits nothing, so none of these syncs are someone else's).
        self.assertGreaterEqual(syncs, n)
        self.assertLess(syncs, 3 * n)

if __name__ == "__main__":
    import unittest
    unittest.main()
