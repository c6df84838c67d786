"""The housing adapter end to end: files dropped into a real inbox watched with
inotify, the real broker behind it, the other agencies reading with the real
CLI, and deliveries written to a real outbox directory."""

import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import NHS, AdapterTest, referral, wait_for  # noqa: E402

HEADER = "eventId,person.nhsNumber,toAgencies,occurredAt,referral.reason,referral.urgency\n"


def row(i, urgency="URGENT", to="social-care"):
    return f"hms-{i},{NHS},{to},2026-12-02T09:00:00Z,rent arrears after a fall,{urgency}\n"


class Housing(AdapterTest):
    def start(self, *args, broker=None):
        self.b = broker or self.broker()
        self.h = self.adapter("carebridge-housing", self.b, args, ready=r"watching").start(listen=None)
        self.inbox = os.path.join(self.h.data, "inbox")
        self.done = os.path.join(self.inbox, "done")
        return self.h

    def drop(self, name, text):
        """As an export job would: write under a hidden name, then move it in."""
        tmp = os.path.join(self.inbox, "." + name)
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.inbox, name))

    def done_with(self, name, timeout=15):
        return wait_for(lambda: os.path.exists(os.path.join(self.done, name)), timeout, f"{name} in done/")

    def rejected(self, name):
        with open(os.path.join(self.done, name + ".rejected")) as f:
            return f.read().splitlines()

    def test_csv_rows_become_events_and_a_bad_row_is_rejected_with_its_line(self):
        self.start()
        no_time = row(5).replace("2026-12-02T09:00:00Z", "")
        self.drop("export.csv", HEADER + row(1) + row(2, urgency="VERY") + row(3) + '"hms-4",,,,"a quoted\ncell",\n'
                  + no_time)
        self.done_with("export.csv")
        lines = self.rejected("export.csv")
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].startswith("line 3: "), lines)
        self.assertIn("referral.urgency", lines[0])
        # What the broker would refuse is refused here, where the sender reads it: by
        # the line each row began on (the quoted cell spans lines 5 and 6).
        self.assertEqual(lines[1:], ["line 5: toAgencies needs at least one agency", "line 7: occurredAt is missing"])
        self.assertNotIn("VERY", self.h.log())  # the file's own values stay in its own directory
        self.assertFalse(os.path.exists(os.path.join(self.inbox, "export.csv")))
        r, got = self.b.recv("social-care", "--count", "2", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([e["eventId"] for e in got], ["hms-1", "hms-3"])
        self.assertEqual(got[0]["fromAgency"], "housing")
        self.assertNotIn(NHS, self.h.log())

    def test_a_row_the_broker_refuses_is_rejected_with_its_line_and_its_neighbours_go_through(self):
        # A typo in an agency id only the broker can judge: the file waits for
        # its answers, so the housing system reads the refusal where it reads
        # its own; the same export dropped again says so again.
        self.start()
        text = HEADER + row(1) + row(2, to="social_care") + row(3)
        self.drop("typo.csv", text)
        self.done_with("typo.csv")
        lines = self.rejected("typo.csv")
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("line 3: refused by carebridge: UNKNOWN_AGENCY: toAgencies[0] names no "
                                            "configured agency"), lines)
        r, got = self.b.recv("social-care", "--count", "2", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([e["eventId"] for e in got], ["hms-1", "hms-3"])
        self.drop("typo-again.csv", text)
        self.done_with("typo-again.csv")
        self.assertEqual(self.rejected("typo-again.csv"), lines)
        r, more = self.b.recv("social-care", "--timeout", "2")
        self.assertEqual(more, [])

    def test_json_drops_an_array_and_ndjson_with_a_broken_line(self):
        self.start()
        events = [referral(f"j-{i}", sender="housing") for i in range(3)]
        for e in events:
            del e["fromAgency"]  # the adapter knows whom it speaks for
        self.drop("batch.json", json.dumps(events, indent=2))
        self.drop("feed.ndjson", json.dumps(referral("n-1", sender="housing")) + "\n{not json\n"
                  + json.dumps(referral("n-2", sender="housing")) + "\n")
        self.done_with("batch.json")
        self.done_with("feed.ndjson")
        self.assertFalse(os.path.exists(os.path.join(self.done, "batch.json.rejected")))
        lines = self.rejected("feed.ndjson")
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("line 2: "), lines)
        r, got = self.b.recv("social-care", "--count", "5", "--timeout", "10")
        self.assertEqual(sorted(e["eventId"] for e in got), ["j-0", "j-1", "j-2", "n-1", "n-2"])

    def test_a_file_still_being_written_is_not_read_until_it_is_closed(self):
        self.start()
        path = os.path.join(self.inbox, "slow.csv")
        f = open(path, "w")
        f.write(HEADER + row(1))
        f.flush()
        time.sleep(1.5)
        self.assertTrue(os.path.exists(path))  # not taken: still open for writing
        f.write(row(2))
        f.close()
        self.done_with("slow.csv")
        self.assertFalse(os.path.exists(os.path.join(self.done, "slow.csv.rejected")))
        r, got = self.b.recv("social-care", "--count", "2", "--timeout", "10")
        self.assertEqual([e["eventId"] for e in got], ["hms-1", "hms-2"])

    def test_a_header_no_field_answers_refuses_the_whole_file(self):
        self.start()
        self.drop("odd.csv", "eventId,shoeSize\nx-1,9\n")
        self.done_with("odd.csv")
        lines = self.rejected("odd.csv")
        self.assertEqual(len(lines), 1)
        self.assertIn("shoeSize", lines[0])
        self.drop("notes.txt", "hello\n")
        self.done_with("notes.txt")
        self.assertIn(".csv, .json", self.rejected("notes.txt")[0])

    def test_killed_mid_file_and_dropped_again_nothing_is_lost_or_sent_twice(self):
        self.start()
        self.b.stop()
        n = 20000
        self.drop("big.csv", HEADER + "".join(row(i) for i in range(n)))
        time.sleep(0.3)
        self.h.kill9()  # perhaps in the middle of the file, perhaps after
        self.b.start()
        self.h.start(listen=None)
        self.done_with("big.csv")
        # The same export dropped again, as a retrying job would: known by digest and line.
        shutil.copy(os.path.join(self.done, "big.csv"), os.path.join(self.inbox, ".again"))
        os.rename(os.path.join(self.inbox, ".again"), os.path.join(self.inbox, "big.csv"))
        self.done_with("big.csv.1")
        r, got = self.b.recv("social-care", "--count", str(n), "--timeout", "30")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = [e["eventId"] for e in got]
        self.assertEqual(len(ids), n)
        self.assertEqual(len(set(ids)), n)
        r, more = self.b.recv("social-care", "--timeout", "2")
        self.assertEqual(more, [])
        self.assertIn("0 events kept, 20000 kept before", self.h.log())

    def test_a_full_export_is_kept_in_batches_stopped_part_way_and_resumed_exactly_once(self):
        # A nightly full export: the adapter stays connected while it reads
        # (one sync per 4096 rows, the broker answered between), stops cleanly
        # wherever SIGTERM finds it, and a restart sends the rest. (Its flags
        # take 1.5 KB an event: the store is sized for them.)
        self.start(broker=self.broker(map_size_mb=256))
        n = 60000
        self.drop("full.csv", HEADER + "".join(row(i) for i in range(n)))
        time.sleep(0.3)
        self.assertEqual(self.h.stop(), 0, self.h.log()[-2000:])
        self.h.start(listen=None)
        self.done_with("full.csv", 180)  # under ThreadSanitizer too
        r, got = self.b.recv("social-care", "--count", str(n), "--timeout", "120", timeout=240)
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = [e["eventId"] for e in got]
        self.assertEqual((len(ids), len(set(ids))), (n, n))
        r, more = self.b.recv("social-care", "--timeout", "2")
        self.assertEqual(more, [])
        self.assertNotIn("forgetting it", self.b.log())  # its heartbeats went on while it read

    def test_the_broker_killed_mid_drops_loses_nothing_and_stores_nothing_twice(self):
        self.start()
        for f in range(20):
            self.drop(f"part-{f:02}.csv", HEADER + "".join(row(f * 100 + i) for i in range(100)))
            if f == 5:
                self.done_with("part-05.csv")
                self.b.kill9()  # while the adapter is still reading and sending
            if f == 12:
                self.b.start()
        for f in range(20):
            self.done_with(f"part-{f:02}.csv")
        r, got = self.b.recv("social-care", "--count", "2000", "--timeout", "30")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(e["eventId"] for e in got), sorted(f"hms-{i}" for i in range(2000)))
        r, more = self.b.recv("social-care", "--timeout", "2")
        self.assertEqual(more, [])

    def test_a_delivery_to_housing_is_written_as_a_json_file(self):
        self.start()
        r = self.b.send("health", [referral("hx-9", to=("housing",))])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        outbox = os.path.join(self.h.data, "outbox")
        files = wait_for(lambda: [f for f in os.listdir(outbox) if f.endswith(".json")], 10, "a delivery file")
        with open(os.path.join(outbox, files[0])) as f:
            event = json.loads(f.read())
        self.assertEqual(event["eventId"], "hx-9")
        self.assertEqual([f for f in os.listdir(outbox) if f.startswith(".")], [])  # no temp file left

    def test_a_delivery_that_cannot_be_written_is_written_once_the_outbox_is_back(self):
        self.start(broker=self.broker(redelivery_timeout_ms=500))
        outbox = os.path.join(self.h.data, "outbox")
        shutil.rmtree(outbox)
        with open(outbox, "w"):  # a file where the directory was: every write fails
            pass
        r = self.b.send("health", [referral("hx-10", to=("housing",))])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        wait_for(lambda: "could not be written" in self.h.log(), 10, "the failed write logged")
        os.unlink(outbox)
        os.mkdir(outbox)
        files = wait_for(lambda: [f for f in os.listdir(outbox) if f.endswith(".json")], 15,
                         "the delivery written when the broker delivered it again")
        with open(os.path.join(outbox, files[0])) as f:
            self.assertEqual(json.loads(f.read())["eventId"], "hx-10")


if __name__ == "__main__":
    import unittest

    unittest.main()
