"""The broker's /metrics, /healthz and /readyz: a known set of events, good
and bad, sent through the CLI to the real broker, and every counter checked
by its exact value, read with Prometheus's own text parser (Debian's
python3-prometheus-client), not a regex."""

import os
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from harness import BrokerTest, referral, wait_for  # noqa: E402


def get(b, path):
    try:
        with urllib.request.urlopen(f"http://{b.metrics}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def samples(b):
    status, ctype, text = get(b, "/metrics")
    assert status == 200, text
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m, name, **labels):
    return m[(name, tuple(sorted(labels.items())))]


class Metrics(BrokerTest):
    def test_each_counter_is_exactly_what_was_sent(self):
        b = self.broker()
        self.assertEqual(get(b, "/healthz")[:1], (200,))
        self.assertEqual(get(b, "/readyz")[0], 200)
        before = samples(b)
        self.assertEqual(value(before, "carebridge_events_total", type="referral"), 0)
        self.assertEqual(value(before, "carebridge_nacks_total", code="DUPLICATE_ID"), 0)

        good = [referral(f"m-{i}") for i in range(3)]
        self.assertEqual(b.send("health", good).returncode, 0)
        self.assertEqual(b.send("health", [good[0]]).returncode, 0)  # the same again: a duplicate's ACK
        changed = referral("m-1", reason="a different reason")
        unknown = referral("m-9", to=("nowhere",))
        self.assertNotEqual(b.send("health", [changed, unknown]).returncode, 0)
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(got), 1)
        wait_for(lambda: value(samples(b), "carebridge_connections", agency="social-care") == 0, 10,
                 "the receiver's goodbye")

        m = samples(b)
        for t in ("referral", "discharge", "handover", "response", "update"):
            self.assertIn(("carebridge_events_total", (("type", t),)), m)
        self.assertEqual(value(m, "carebridge_events_total", type="referral"), 3)
        self.assertEqual(sum(v for (n, _), v in m.items() if n == "carebridge_events_total"), 3)
        self.assertEqual(value(m, "carebridge_acks_total"), 4)
        self.assertEqual(value(m, "carebridge_duplicates_total"), 1)
        self.assertEqual(value(m, "carebridge_nacks_total", code="DUPLICATE_ID"), 1)
        self.assertEqual(value(m, "carebridge_nacks_total", code="UNKNOWN_AGENCY"), 1)
        self.assertEqual(sum(v for (n, _), v in m.items() if n == "carebridge_nacks_total"), 2)
        self.assertEqual(value(m, "carebridge_queue_depth", agency="social-care"), 2)
        self.assertEqual(value(m, "carebridge_queue_depth", agency="housing"), 0)
        self.assertEqual(value(m, "carebridge_in_flight", agency="social-care"), 0)
        self.assertEqual(value(m, "carebridge_parked", agency="social-care"), 0)
        self.assertGreater(value(m, "carebridge_oldest_undelivered_seconds", agency="social-care"), 0)
        self.assertEqual(value(m, "carebridge_redeliveries_total"), 0)
        self.assertEqual(value(m, "carebridge_events_stored"), 3)
        self.assertEqual(value(m, "carebridge_store_limit_bytes"), 64 << 20)
        self.assertGreater(value(m, "carebridge_store_used_bytes"), 0)
        self.assertEqual(value(m, "carebridge_publishing_paused"), 0)
        commits = value(m, "carebridge_commit_duration_seconds_count")
        self.assertGreaterEqual(commits, 3)  # the three sends each, at least, and the delivery's ack
        self.assertEqual(value(m, "carebridge_commit_duration_seconds_bucket", le="+Inf"), commits)
        self.assertGreater(value(m, "carebridge_commit_duration_seconds_sum"), 0)
        self.assertEqual(value(m, "carebridge_commit_batch_events_count"), commits)
        self.assertEqual(value(m, "carebridge_commit_batch_events_sum"), 3)
        self.assertGreaterEqual(value(m, "carebridge_syncs_total"), commits)
        # Open flags by type and agency: what `carebridge flags --open` lists, counted.
        want = {}
        for f in b.flags("--open"):
            for agency in f["agencies"]:
                want[(f["type"], agency)] = want.get((f["type"], agency), 0) + 1
        got = {(dict(labels)["type"], dict(labels)["agency"]): v
               for (n, labels), v in m.items() if n == "carebridge_flags_open"}
        self.assertEqual({k: v for k, v in got.items() if v}, want)
        self.assertEqual(len(got), 4 * 10)  # every agency and type, at 0 until it counts
        self.assertEqual(want[("INTER_AGENCY_HANDOFF", "social-care")], 3)
        print(f"\n/metrics after 3 events, a duplicate and 2 refused: events 3, acks 4 (1 duplicate), "
              f"NACKs DUPLICATE_ID 1 and UNKNOWN_AGENCY 1, social-care queue 2, {int(commits)} commits")

    def test_readyz_says_when_publishing_is_paused(self):
        b = self.broker(map_size_mb=1)
        self.assertEqual(get(b, "/readyz")[0], 200)
        events = [referral(f"full-{i:04}", reason="r" * 700) for i in range(1500)]
        r = b.send("health", events, "--window", "64")
        self.assertEqual(r.returncode, 1)  # the store filled: STORE_FULL for the rest
        status, _, text = get(b, "/readyz")
        self.assertEqual(status, 503, text)
        self.assertIn("not ready: publishing is paused", text)
        self.assertEqual(get(b, "/healthz")[0], 200)
        m = samples(b)
        self.assertEqual(value(m, "carebridge_publishing_paused"), 1)
        self.assertEqual(value(m, "carebridge_acks_total") + value(m, "carebridge_nacks_total", code="STORE_FULL"),
                         len(events))
        self.assertEqual(value(m, "carebridge_events_total", type="referral"), value(m, "carebridge_acks_total"))
        self.assertEqual(get(b, "/nothing")[0], 404)
