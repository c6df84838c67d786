"""Retention in the real broker: a store holding events and audit records
written three days ago (by cb-bench-retention-fill, through the store's own
code but not the broker's), a broker keeping both two days. It removes every
expired one while it serves, and nothing stored since; no journey, status or
queue shows an expired event again, across a restart; each run is in the
audit; and seqs go on above what went."""

import datetime
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, Broker, BrokerTest, referral, wait_for  # noqa: E402

FILL = os.path.join(BIN, "cb-bench-retention-fill")
PERSON = "9434765919"
OLD_EVENTS, OLD_AUDIT = 700, 1200


class Retention(BrokerTest):
    def audit(self, b):
        r = b.cli("audit", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def test_expired_events_and_audit_records_go_and_nothing_else(self):
        b = Broker(tempfile.mkdtemp(dir=self.tmp), config="retention:\n  event_days: 2\n  audit_days: 2\n")
        self.brokers.append(b)
        fill = subprocess.run([FILL, "--dir", b.data, "--events", str(OLD_EVENTS), "--records", str(OLD_AUDIT),
                               "--days-ago", "3", "--map-mb", "64", "--person", PERSON],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(fill.returncode, 0, fill.stderr)
        # First without retention, for the space the expired records take.
        with open(b.config) as f:
            config = f.read()
        with open(b.config, "w") as f:
            f.write(config.replace("event_days: 2", "event_days: 0").replace("audit_days: 2", "audit_days: 0"))
        b.start()
        status, _ = b.status()
        self.assertEqual(int(status["events"]), OLD_EVENTS)
        used_before = int(status["storeUsedBytes"])
        self.assertEqual(b.stop(), 0)
        with open(b.config, "w") as f:
            f.write(config)
        b.start()
        new = [referral(f"r-new-{i}", nhs=PERSON) for i in range(5)]
        sent = b.send("health", new)
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)

        def expired_gone():
            status, _ = b.status()
            return int(status["events"]) == len(new)
        wait_for(expired_gone, 30, "the expired events to be removed")
        status, agencies = b.status()
        self.assertEqual(int(status["lastSeq"]), OLD_EVENTS + len(new))
        self.assertNotIn("queued", agencies["housing"])  # the filled events' entries went with them
        self.assertEqual(int(agencies["social-care"]["queued"]), len(new))
        steps = b.journey(PERSON)
        self.assertEqual(sorted(s["event"]["eventId"] for s in steps), sorted(e["eventId"] for e in new))

        def runs():
            return [a for a in self.audit(b) if a["action"] == "retention"]
        wait_for(lambda: sum(int(a["detail"].split(", ")[2].split()[0]) for a in runs()) == OLD_AUDIT, 30,
                 "the expired audit records to be removed")
        events_removed = sum(int(a["detail"].split()[1]) for a in runs())
        self.assertEqual(events_removed, OLD_EVENTS)
        # Nothing older than the period is left in the audit; the runs are the broker's own.
        cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
        for a in self.audit(b):
            self.assertGreater(datetime.datetime.fromisoformat(a["at"].replace("Z", "+00:00")), cutoff, a)
        self.assertTrue(all(a["who"] == "carebridge-broker" for a in runs()))
        self.assertIn("undelivered", b.log())
        # The pages they took are free for LMDB to use again.
        used_after = int(b.status()[0]["storeUsedBytes"])
        self.assertLess(used_after, used_before)
        print(f"\nretention: {events_removed} of {OLD_EVENTS} expired events and {OLD_AUDIT} audit records removed "
              f"in {len(runs())} runs, each audited; {status['events']} events kept of {len(new)} stored since; "
              f"pages in use {used_before // 1024} KiB before, {used_after // 1024} KiB after")

        # A restart keeps it so, and seqs go on above what went.
        self.assertEqual(b.stop(), 0)
        b.start()
        status, _ = b.status()
        self.assertEqual(int(status["events"]), len(new))
        self.assertEqual(len(b.journey(PERSON)), len(new))
        sent = b.send("health", [referral("r-after", nhs=PERSON)])
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        self.assertIn(f"seq={OLD_EVENTS + len(new) + 1}", sent.stdout + b.log())
