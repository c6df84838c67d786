"""The health adapter end to end: HL7 v2 over MLLP on a real socket (sent
with python3-hl7's mllp_send, a client nobody on the team wrote, and with a
plain socket where the test needs to misbehave), answers read back with
python3-hl7's parser, the real broker behind it, and the agencies on the other
side reading with the real CLI."""

import os
import socket
import subprocess
import sys
import threading
import time

import hl7

sys.path.insert(0, os.path.dirname(__file__))
from harness import AdapterTest, fault_injection_env, response, wait_for  # noqa: E402

NHS = "9434765919"
VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def a03(control="MSG1", visit="V0001", version="2.4", fs="|"):
    segs = [
        f"MSH{fs}^~\\&{fs}PAS{fs}RXH{fs}CB{fs}COUNCIL{fs}20261202101112{fs}{fs}ADT^A03^ADT_A03{fs}{control}{fs}P{fs}{version}",
        f"EVN{fs}A03{fs}20261203140000",
        f"PID{fs}1{fs}{fs}M123^^^RXH^MR~{NHS}^^^NHS^NH{fs}{fs}TEST^ANNE{fs}{fs}19400101{fs}F",
        f"PV1{fs}1{fs}I{fs}WARD7^^^RXH" + fs * 16 + visit + fs * 18 + "HOME" + fs * 7 + "20261130090000" + fs
        + "20261203135500",
    ]
    return "\r".join(segs) + "\r"


def adt(trigger, control, visit, pv1_from_3):
    """An ADT^A01 or A02 for the a03() patient: PV1 from field 3 on as given."""
    return "\r".join([
        f"MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202101112||ADT^{trigger}^ADT_{trigger}|{control}|P|2.4",
        f"EVN|{trigger}|20261202101000",
        f"PID|1||M123^^^RXH^MR~{NHS}^^^NHS^NH||TEST^ANNE||19400101|F",
        "PV1|1|I|" + pv1_from_3.replace("VISIT", visit),
        "PV2|||^Fall at home||||||20261209",
    ]) + "\r"


def frame(msg):
    return VT + (msg.encode() if isinstance(msg, str) else msg) + FS + CR


class Mllp:
    """A plain MLLP connection: send a message, read its answer."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def send(self, msg):
        self.sock.sendall(frame(msg))

    def answer(self):
        while FS + CR not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("the adapter closed the connection without answering")
            self.buf += chunk
        end = self.buf.index(FS + CR)
        msg, self.buf = self.buf[:end], self.buf[end + 2:]
        assert msg.startswith(VT), msg
        return hl7.parse(msg[1:].decode())

    def ask(self, msg):
        self.send(msg)
        return self.answer()

    def close(self):
        self.sock.close()


def msa(ack):
    return str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])


def settled(broker, agency):
    """Nothing queued, in flight or parked for agency (proto3 JSON leaves zeros out)."""
    a = broker.status()[1][agency]
    return not any(int(a.get(k, 0)) for k in ("queued", "inFlight", "parked"))


class Health(AdapterTest):
    def start(self, *args, broker=None):
        self.b = broker or self.broker()
        self.h = self.adapter("carebridge-health", self.b, args).start()
        return self.h

    def start_under_fiu(self):
        """The adapter under libfiu, and a function that sends fiu-ctrl a command for it."""
        prefix = os.path.join(self.tmp, "fiu-ctrl")
        self.b = self.broker()
        h = self.adapter("carebridge-health", self.b, env=fault_injection_env(prefix)).start()

        def fiu(command):
            r = subprocess.run(["fiu-ctrl", "-f", prefix, "-c", command, str(h.proc.pid)],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 0, r.stderr)
        return h, fiu

    def test_an_a03_from_a_real_client_is_acked_with_its_flags_and_reaches_both_agencies(self):
        h = self.start()
        path = os.path.join(self.tmp, "a03.mllp")
        with open(path, "wb") as f:
            f.write(frame(a03()))
        r = subprocess.run(["mllp_send", "-p", str(h.port), "-f", path, "127.0.0.1"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        ack = hl7.parse(r.stdout.strip().replace("\n", "\r"))
        self.assertEqual(msa(ack), ("AA", "MSG1"))
        self.assertEqual(str(ack.segment("MSH")[9]), "ACK^A03^ACK")
        self.assertEqual(str(ack.segment("MSH")[12]), "2.4")  # in the version it answers
        self.assertRegex(str(ack.segment("MSH")[7]), r"^\d{14}\+0000$")  # UTC, and says so
        self.assertIn("MISSING_INFORMATION", str(ack.segment("MSA")[3]))  # the flags, where v2.4 has room
        for agency in ("social-care", "housing"):
            r, got = self.b.recv(agency, "--count", "1", "--timeout", "10")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(got[0]["eventId"], "hl7:RXH:visit:V0001:discharge")
            self.assertEqual(got[0]["person"]["nhsNumber"], NHS)
            self.assertEqual(got[0]["discharge"]["plannedDate"], "2026-12-03")
        self.assertNotIn(NHS, h.log())
        self.assertNotIn("ANNE", h.log().upper().replace("CAREBRIDGE", ""))

    def test_v2_5_is_answered_with_its_separators_and_flags_as_warnings(self):
        h = self.start()
        c = Mllp(h.port)
        ack = c.ask(a03(version="2.5.1", fs="*"))
        self.assertTrue(str(ack).startswith("MSH*^~\\&*"))
        self.assertEqual(msa(ack), ("AA", "MSG1"))
        warnings = [e for e in ack.segments("ERR") if str(e[4]) == "W"]
        self.assertTrue(any("MISSING_INFORMATION" in str(e[8]) for e in warnings), str(ack))
        c.close()

    def test_a_resend_is_stored_once_and_two_messages_sharing_a_control_id_both(self):
        h = self.start()
        c = Mllp(h.port)
        for _ in range(3):
            self.assertEqual(msa(c.ask(a03("SAME", "V1"))), ("AA", "SAME"))
        self.assertEqual(msa(c.ask(a03("SAME", "V2"))), ("AA", "SAME"))  # another visit, the same control id
        c.close()
        r, got = self.b.recv("social-care", "--count", "3", "--timeout", "3")
        self.assertEqual(sorted(e["eventId"] for e in got),
                         ["hl7:RXH:visit:V1:discharge", "hl7:RXH:visit:V2:discharge"])

    def test_names_sent_in_latin_1_or_windows_1252_arrive_as_utf8(self):
        # MSH-18 8859/1 as declared, and the same bytes undeclared (as many UK
        # PAS feeds send them): the name is carried, not dropped as not UTF-8.
        h = self.start()
        c = Mllp(h.port)
        declared = a03("LAT1", "VL1").replace("|P|2.4", "|P|2.4||||||8859/1", 1).replace("TEST^ANNE", "ZOË^ANNE")
        undeclared = a03("LAT2", "VL2").replace("TEST^ANNE", "CHÂTEAU^ANNE")
        self.assertEqual(msa(c.ask(declared.encode("latin-1"))), ("AA", "LAT1"))
        self.assertEqual(msa(c.ask(undeclared.encode("cp1252"))), ("AA", "LAT2"))
        c.close()
        r, got = self.b.recv("social-care", "--count", "2", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        names = sorted(e["person"].get("name", "") for e in got)
        self.assertEqual(len(names), 2, got)
        self.assertIn("CHÂTEAU", names[0])
        self.assertIn("ZOË", names[1])

    def test_a_cancelled_discharge_reaches_those_preparing_for_it(self):
        # domain.md's Wednesday: the discharge agreed, then called off on the day.
        h = self.start()
        c = Mllp(h.port)
        self.assertEqual(msa(c.ask(a03("D1", "VC1"))), ("AA", "D1"))
        a13 = a03("X1", "VC1").replace("ADT^A03^ADT_A03", "ADT^A13^ADT_A01").replace("EVN|A03", "EVN|A13")
        self.assertEqual(msa(c.ask(a13)), ("AA", "X1"))
        c.close()
        r, got = self.b.recv("housing", "--count", "2", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("discharge", got[0])
        self.assertEqual(got[1]["correlationId"], "hl7:RXH:visit:VC1:discharge")
        self.assertEqual(got[1]["closure"]["reason"], "discharge cancelled (ADT^A13)")

    def test_a_second_a03_for_a_visit_updates_its_discharge(self):
        h = self.start()
        c = Mllp(h.port)
        self.assertEqual(msa(c.ask(a03("M1", "V7"))), ("AA", "M1"))
        self.assertEqual(msa(c.ask(a03("M2", "V7"))), ("AA", "M2"))
        c.close()
        r, got = self.b.recv("housing", "--count", "2", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("discharge", got[0])
        self.assertEqual(got[1]["correlationId"], "hl7:RXH:visit:V7:discharge")
        self.assertIn("update", got[1])

    def test_a_stay_admitted_moved_and_discharged_is_one_journey(self):
        h = self.start()
        c = Mllp(h.port)
        self.assertEqual(msa(c.ask(adt("A01", "S1", "V9", "AMU^^^RXH|E|||C1^Doctor^Ann||||||||||||VISIT"))),
                         ("AA", "S1"))
        self.assertEqual(msa(c.ask(adt("A02", "S2", "V9", "WARD7^^^RXH|E||AMU^^^RXH|||||||||||||VISIT"))),
                         ("AA", "S2"))
        self.assertEqual(msa(c.ask(a03("S3", "V9"))), ("AA", "S3"))
        c.close()
        r, got = self.b.recv("social-care", "--count", "3", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        admission, transfer, discharge = got
        self.assertEqual(admission["eventId"], "hl7:RXH:visit:V9:admission")
        self.assertEqual(admission["admission"]["setting"], "AMU (RXH)")
        self.assertTrue(admission["admission"]["emergency"])
        self.assertEqual(transfer["correlationId"], "hl7:RXH:visit:V9:admission")
        self.assertEqual(transfer["update"]["admission"]["previousSetting"], "AMU (RXH)")
        self.assertEqual(discharge["eventId"], "hl7:RXH:visit:V9:discharge")
        steps = self.b.journey(NHS)
        self.assertEqual([s["event"]["eventId"] for s in steps],
                         ["hl7:RXH:visit:V9:admission", "hl7:RXH:visit:V9:discharge"])
        self.assertEqual(steps[0]["event"]["admission"]["setting"], "WARD7 (RXH)")  # the transfer merged in
        text = self.b.cli("journey", NHS).stdout
        self.assertIn("admitted as an emergency to WARD7 (RXH); moved from AMU (RXH); Fall at home", text)
        # An admission asks nothing of anyone: no handoff flag is raised for it.
        flags = self.b.flags()
        self.assertTrue([f for f in flags if "hl7:RXH:visit:V9:discharge" in f.get("eventIds", [])], flags)
        self.assertFalse([f for f in flags if "hl7:RXH:visit:V9:admission" in f.get("eventIds", [])], flags)

    def test_each_bad_message_gets_a_specific_answer_and_a_good_one_follows(self):
        h = self.start("--max-message", "4096")
        a08 = a03("BAD1").replace("ADT^A03^ADT_A03", "ADT^A08^ADT_A01")
        no_pv1 = "\r".join(s for s in a03("BAD2", version="2.5").split("\r") if not s.startswith("PV1"))
        cases = [
            (a08, "AR", "201", "A08 is not mapped"),
            (no_pv1, "AE", "100", "PV1"),
            ("this is not HL7 at all", "AE", "100", "does not begin with an MSH"),
            (a03("BIG") + "ZZZ|" + "x" * 8000 + "\r", "AR", "207", "larger"),
        ]
        c = Mllp(h.port)
        for n, (msg, code, err_code, says) in enumerate(cases):
            with self.subTest(case=n):
                ack = c.ask(msg)
                self.assertEqual(str(ack.segment("MSA")[1]), code, str(ack))
                if err_code:
                    text = str(ack)
                    self.assertIn(err_code, text)
                    self.assertIn(says, text)
                good = c.ask(a03(f"GOOD{n}", f"V{n}"))
                self.assertEqual(msa(good), ("AA", f"GOOD{n}"))
        c.close()
        self.assertIn("refused", h.log())

    def test_messages_taken_while_the_broker_is_down_arrive_once_it_is_back(self):
        h = self.start("--ack-wait", "100")
        self.b.stop()
        c = Mllp(h.port)
        for i in range(20):
            self.assertEqual(msa(c.ask(a03(f"OUT{i}", f"V{i}"))), ("AA", f"OUT{i}"))
        c.close()
        self.b.start()
        r, got = self.b.recv("social-care", "--count", "20", "--timeout", "20")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len({e["eventId"] for e in got}), 20)
        r, more = self.b.recv("social-care", "--timeout", "2")
        self.assertEqual(more, [])  # exactly once

    def test_the_broker_killed_mid_feed_loses_nothing_and_stores_nothing_twice(self):
        h = self.start("--ack-wait", "200")
        answers = []

        def feed():
            c = Mllp(h.port)
            for i in range(300):
                answers.append(msa(c.ask(a03(f"FEED{i}", f"F{i}"))))
            c.close()

        t = threading.Thread(target=feed)
        t.start()
        wait_for(lambda: len(answers) >= 60, 30, "the feed under way")
        self.b.kill9()
        wait_for(lambda: len(answers) >= 120, 30, "messages accepted while the broker is dead")
        self.b.start()
        t.join(60)
        self.assertEqual(answers, [("AA", f"FEED{i}") for i in range(300)])
        r, got = self.b.recv("social-care", "--count", "300", "--timeout", "30")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = [e["eventId"] for e in got]
        self.assertEqual(sorted(ids), sorted(f"hl7:RXH:visit:F{i}:discharge" for i in range(300)))
        r, more = self.b.recv("social-care", "--timeout", "2")
        self.assertEqual(more, [])

    def test_what_a_killed_adapter_acked_is_not_lost(self):
        h = self.start("--ack-wait", "100")
        self.b.stop()
        c = Mllp(h.port)
        for i in range(10):
            self.assertEqual(msa(c.ask(a03(f"K{i}", f"V{i}"))), ("AA", f"K{i}"))
        h.kill9()
        self.b.start()
        h.start()
        r, got = self.b.recv("housing", "--count", "10", "--timeout", "20")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(e["eventId"] for e in got), sorted(f"hl7:RXH:visit:V{i}:discharge" for i in range(10)))

    def test_a_message_whose_outbox_sync_fails_is_refused_and_its_resend_arrives_once(self):
        # The adapter sends a batch to the broker while the outbox syncs it.
        # With the broker up, the broker may store a message the PAS is told
        # to send again: the resend is then the broker's duplicate. With it
        # down, the refused message must never reach it from here, and what
        # comes next must.
        h, fiu = self.start_under_fiu()

        def refused_on_failed_sync(c, control, visit):
            fiu("enable name=posix/io/sync/fdatasync,failinfo=5")
            ack = c.ask(a03(control, visit))
            fiu("disable name=posix/io/sync/fdatasync")
            self.assertEqual(msa(ack), ("AR", control))
            self.assertIn("could not be kept", str(ack))

        def arrived(count):
            r, got = self.b.recv("social-care", "--count", str(count + 1), "--timeout", "3")
            return sorted(e["eventId"] for e in got)

        c = Mllp(h.port)
        self.assertEqual(msa(c.ask(a03("OK1", "V1"))), ("AA", "OK1"))
        refused_on_failed_sync(c, "EIO1", "V2")
        self.assertEqual(msa(c.ask(a03("EIO1", "V2"))), ("AA", "EIO1"))  # the PAS sends it again
        self.assertEqual(arrived(2), ["hl7:RXH:visit:V1:discharge", "hl7:RXH:visit:V2:discharge"])

        self.b.stop()
        refused_on_failed_sync(c, "EIO2", "V3")
        self.assertEqual(msa(c.ask(a03("OK2", "V4"))), ("AA", "OK2"))  # kept in the outbox
        self.b.start()
        self.assertEqual(arrived(1), ["hl7:RXH:visit:V4:discharge"])  # V3 was never kept
        self.assertEqual(msa(c.ask(a03("EIO2", "V3"))), ("AA", "EIO2"))
        self.assertEqual(arrived(1), ["hl7:RXH:visit:V3:discharge"])
        c.close()
        self.assertIn("could not keep", h.log())

    def test_a_delivery_to_health_is_written_as_hl7(self):
        h = self.start()
        c = Mllp(h.port)
        self.assertEqual(msa(c.ask(a03())), ("AA", "MSG1"))
        c.close()
        r = self.b.send("social-care", [response("sc-1", "hl7:RXH:visit:V0001:discharge", "ACCEPTED")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        outbox = os.path.join(h.data, "outbox")
        files = wait_for(lambda: [f for f in os.listdir(outbox) if f.endswith(".hl7")], 10, "an HL7 file")
        with open(os.path.join(outbox, files[0]), newline="") as f:
            msg = hl7.parse(f.read())
        self.assertEqual(str(msg.segment("MSH")[9]), "RRI^I12^RRI_I12")
        self.assertEqual(str(msg.segment("RF1")[1]), "A")
        self.assertEqual(str(msg.segment("RF1")[6]), "hl7:RXH:visit:V0001:discharge")
        wait_for(lambda: settled(self.b, "health"), 10, "the delivery acknowledged")

    def test_a_delivery_taken_while_the_outbox_cannot_record_it_is_retried_calmly(self):
        # The delivery is written (write, fsync) but the outbox's record of
        # it (LMDB's pwrite) fails: it is tried again once a second, not in
        # a busy loop, and acknowledged once the disk is back.
        h, fiu = self.start_under_fiu()

        fiu("enable name=posix/io/rw/pwrite,failinfo=5")
        r = self.b.send("social-care", [response("sc-eio", "hl7:RXH:visit:V9:discharge", "ACCEPTED")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        outbox = os.path.join(h.data, "outbox")
        wait_for(lambda: [f for f in os.listdir(outbox) if f.endswith(".hl7")], 10, "the HL7 file")
        time.sleep(3)
        failures = h.log().count("recording answers in the outbox")
        fiu("disable name=posix/io/rw/pwrite")
        self.assertTrue(1 <= failures <= 6, f"{failures} attempts in about 3 s")
        wait_for(lambda: settled(self.b, "health"), 10, "the delivery acknowledged")

    def test_a_delivery_is_forwarded_over_mllp_and_taken_on_its_aa(self):
        got, srv = [], socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(20)

        def engine():  # answers AE to the first message, AA after
            conn, _ = srv.accept()
            buf = b""
            while len(got) < 2:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while FS + CR in buf:
                    end = buf.index(FS + CR)
                    msg = hl7.parse(buf[1:end].decode())
                    buf = buf[end + 2:]
                    got.append(msg)
                    code = "AE" if len(got) == 1 else "AA"
                    conn.sendall(frame(f"MSH|^~\\&|ENGINE|RXH|||20261202||ACK|A{len(got)}|P|2.5.1\r"
                                       f"MSA|{code}|{msg.segment('MSH')[10]}\r"))
            conn.close()

        t = threading.Thread(target=engine, daemon=True)
        t.start()
        b = self.broker(redelivery_timeout_ms=1000)
        self.start("--forward", f"127.0.0.1:{srv.getsockname()[1]}", broker=b)
        r = b.send("social-care", [response("sc-2", "some-referral", "DECLINED", reason="no capacity")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        t.join(30)
        self.assertEqual(len(got), 2)  # the AE left it untaken: the broker delivered it again
        self.assertEqual(str(got[1].segment("RF1")[1]), "R")
        wait_for(lambda: settled(b, "health"), 10, "the delivery acknowledged after the AA")
        srv.close()


if __name__ == "__main__":
    import unittest

    unittest.main()
