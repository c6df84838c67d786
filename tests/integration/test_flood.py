"""Frames that give the store nothing to do (heartbeats, hellos, refusals) cost
the broker no memory that lasts, and heartbeats and a connection that has not
said hello are answered at a bounded rate, so a flood of cheap frames can
neither grow the broker nor crowd out the agencies."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import RAWFRAME, BrokerTest, field, parse_send, raw_publish, referral  # noqa: E402

REFUSALS_PER_S = 20
# ASan keeps freed memory in quarantine (256 MiB by default) and in its own
# free lists, which is ASan's memory, not the broker's; a small quarantine and
# a prompt release to the system keep the measure honest (ignored elsewhere).
SMALL_QUARANTINE = {"ASAN_OPTIONS": "quarantine_size_mb=1:allocator_release_to_os_interval_ms=100"}


def rss_anon_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon")


def flood(broker, hex_frame, n, agency=None):
    args = [RAWFRAME, broker.endpoint] + (["--as", agency] if agency else []) + ["--flood", str(n), hex_frame]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Flood(BrokerTest):
    def test_a_flood_of_cheap_frames_leaves_memory_flat_and_unknown_senders_get_a_bounded_answer(self):
        b = self.broker(env=SMALL_QUARANTINE)
        heartbeat, publish = field(17, b"").hex(), raw_publish(5, event_id=b"flood-1")
        # The same flood twice, an event between: what ZeroMQ's queues and the
        # allocators keep of such a flood at its peak is in the baseline, so
        # the second measures what the broker itself holds on to.
        for measured in (False, True):
            if measured:
                self.assertEqual(b.send("health", [referral("before")]).returncode, 0)
                time.sleep(0.5)
                base = rss_anon_mb(b.proc.pid)
            beats = flood(b, heartbeat, 400000, agency="health")  # a known connection: no store work at all
            unknown = flood(b, publish, 30000)  # never said hello
        grown = rss_anon_mb(b.proc.pid) - base
        self.assertLess(grown, 16, f"RssAnon grew {grown:.1f} MB over 430,000 frames with nothing to store")

        # A known connection's heartbeats are answered four times a heartbeat
        # interval (2 s here) at most: enough to keep it alive, not one each.
        self.assertLessEqual(beats["answers"], 2 * (beats["seconds"] + 3) + 1, beats)
        self.assertGreater(beats["answers"], 0)
        bound = REFUSALS_PER_S * (unknown["seconds"] + 3)
        self.assertGreater(unknown["answers"], 0, "the first refusals are answered: a client needs one to say hello")
        self.assertLessEqual(unknown["answers"], bound, unknown)
        log = b.log()
        self.assertLessEqual(log.count("code=HELLO_REQUIRED"), bound)
        self.assertIn("from a connection that has not said hello: the rest go unanswered", log)

        # The agencies are served as before.
        r = b.send("health", [referral("after")])
        self.assertEqual(parse_send(r.stdout)["after"], ("ACK", 2))


if __name__ == "__main__":
    import unittest
    unittest.main()
