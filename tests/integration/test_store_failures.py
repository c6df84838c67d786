"""A store that is full or fails to sync never acknowledges: full gives
STORE_FULL with nothing half-written and publishing resumes when room returns;
a failed sync gives STORE_UNAVAILABLE and never an ACK. Every ACK follows a
sync (counted with strace, since a kill -9 test cannot show a missing one)."""

import contextlib
import os
import struct
import subprocess
import sys

import lmdb

sys.path.insert(0, os.path.dirname(__file__))
from harness import Broker, BrokerTest, NHS, fault_injection_env, parse_send, referral, wait_for  # noqa: E402


# LeakSanitizer cannot run under ptrace (strace) in the sanitizer build.
UNDER_STRACE = dict(env={"ASAN_OPTIONS": "detect_leaks=0"})


def fiu(broker, command):
    r = subprocess.run(["fiu-ctrl", "-f", broker.fiu_prefix, "-c", command, str(broker.proc.pid)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


@contextlib.contextmanager
def small_filesystem(mountpoint, mib):
    """A real filesystem of `mib` MiB: ext4 on a loop device, or tmpfs where
    loop devices are refused. Unmounted on the way out."""
    os.makedirs(mountpoint)
    image = mountpoint + ".img"
    with open(image, "wb") as f:
        f.truncate(mib << 20)
    attempts = [(["mkfs.ext4", "-q", "-F", image], ["mount", "-o", "loop", image, mountpoint]),
                (None, ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", mountpoint])]
    why = []
    for mkfs, mount in attempts:
        if mkfs and subprocess.run(mkfs, capture_output=True).returncode != 0:
            continue
        r = subprocess.run(mount, capture_output=True, text=True)
        if r.returncode == 0:
            break
        why.append(f"{' '.join(mount[:3])}: {r.stderr.strip()}")
    else:
        raise AssertionError("this test needs a real small filesystem and could mount none "
                             "(run as root where mount is allowed): " + "; ".join(why))
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", mountpoint], capture_output=True)
        os.unlink(image)


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

    def test_a_real_full_disk_is_store_full_without_reopening_and_resumes_when_space_returns(self):
        with small_filesystem(os.path.join(self.tmp, "fs"), 32) as fs:
            ballast = os.path.join(fs, "ballast")
            with open(ballast, "wb") as f:
                f.write(b"\xff" * (8 << 20))
            b = Broker(os.path.join(self.tmp), data=os.path.join(fs, "data"), map_size_mb=64)
            self.brokers.append(b)
            b.start()
            events = [referral(f"disk-{i:05}", reason="r" * 2000) for i in range(14000)]
            r = b.send("health", events, "--window", "256", timeout=120)
            verdicts = parse_send(r.stdout)
            self.assertEqual(len(verdicts), len(events), r.stderr)
            acked = {e for e, v in verdicts.items() if v[0] == "ACK"}
            refused = {e: v for e, v in verdicts.items() if v[0] == "NACK"}
            self.assertGreater(len(acked), 1000)
            self.assertGreater(len(refused), 1000, "the disk never filled")
            codes = {v[1] for v in refused.values()}
            self.assertEqual(codes, {"STORE_FULL"}, "a full disk is STORE_FULL, never STORE_UNAVAILABLE")
            self.assertIn("filesystem holding the store is full", next(iter(refused.values()))[2])
            log = b.log()
            self.assertNotIn("reopening", log)
            self.assertNotIn("STORE_UNAVAILABLE", log)
            s, _ = b.status()
            self.assertTrue(s.get("publishingPaused"), s)
            self.assertIn("filesystem", s["pausedReason"])
            self.assertEqual(int(s["events"]), len(acked), "nothing acknowledged was lost")
            text = b.cli("status").stdout
            self.assertIn("FULL: publishes are refused: the filesystem holding the store is full", text)

            # Room returns: publishing resumes by itself, once the filesystem
            # counts the space freed (ext4 does at its next journal commit,
            # within five seconds), as a sender retrying STORE_FULL finds.
            os.unlink(ballast)
            again = [e for e in events if e["eventId"] in refused][:500]
            # Under ThreadSanitizer, beside other tests, one try can take seconds: a minute in all.
            wait_for(lambda: b.send("health", again[:1], "--window", "1", timeout=30).returncode == 0, 60,
                     "a publish accepted once the freed space is counted")
            r = b.send("health", again, "--window", "64", timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout[-600:])
            s, _ = b.status()
            self.assertFalse(s.get("publishingPaused"), s)
            self.assertEqual(int(s["events"]), len(acked) + len(again))
            self.assertEqual(b.stop(), 0)

    def test_a_commit_that_fails_midway_refuses_every_publish_with_its_real_code(self):
        # A writer outside the broker takes the next seq (as a second broker on
        # the same store once could): the batch's first put fails, and every
        # publish of that batch must be refused for that, not called STORE_FULL.
        b = self.broker()
        self.assertEqual(b.send("health", [referral("mid-0")]).returncode, 0)
        with lmdb.open(b.data, max_dbs=16, map_size=64 << 20) as env:
            events_db = env.open_db(b"events", create=False)
            with env.begin(write=True) as txn:
                txn.put(struct.pack(">Q", 2), b"written by someone else", db=events_db)
        r = b.send("health", [referral(f"mid-{i}") for i in range(1, 31)], "--window", "64")
        verdicts = parse_send(r.stdout)
        self.assertEqual(len(verdicts), 30)
        refused = {e: v for e, v in verdicts.items() if v[0] == "NACK"}
        self.assertIn("mid-1", refused, "the batch holding the first publish failed")
        # Every publish of the failed batch is refused for the failure; a later
        # batch (the 30 may not share one) commits, since the broker reopened
        # the store and carries on from the seq the store holds.
        self.assertEqual({v[1] for v in refused.values()}, {"STORE_UNAVAILABLE"}, r.stdout)
        self.assertNotIn("publish_fill_percent", r.stdout)
        r = b.send("health", [referral(f"mid-{i}") for i in range(1, 31)], "--window", "64")
        self.assertEqual(r.returncode, 0, r.stdout)
        seqs = [v[1] for v in parse_send(r.stdout).values()]
        self.assertEqual(len(set(seqs)), 30)
        self.assertGreater(min(seqs), 2, "no seq the outside writer took")

    def test_the_zeroed_reserve_is_topped_up_once_the_broker_is_idle(self):
        # Zeroed blocks beyond LMDB's last page, an eighth of the map (8 MiB
        # here): spent by ~8 MiB of events, refilled once the store thread
        # has had nothing to do for a while, not between commits.
        b = self.broker(map_size_mb=64)
        reserve = (64 << 20) // 8
        data_file = os.path.join(b.data, "data.mdb")
        events = [referral(f"rs-{i:04}", reason="r" * 3000) for i in range(2400)]
        r = b.send("health", events, "--window", "256")
        self.assertEqual(r.returncode, 0, r.stdout[-500:])

        def reserve_beyond_last_page():
            with lmdb.open(b.data, readonly=True, lock=False, max_dbs=200, map_size=64 << 20) as env:
                end = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
            return os.path.getsize(data_file) - end

        wait_for(lambda: reserve_beyond_last_page() >= reserve, 15, "the reserve topped up to an eighth of the map")

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
