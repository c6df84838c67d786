"""Trust: with broker.key_file set, every connection proves a configured CURVE
key at the handshake (a ZAP handler decides), and what it may do follows from
whose key it is: the real broker, real CURVE sockets on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, BROKER, CLI, RAWFRAME, BrokerTest, field, ndjson, parse_send, referral, wait_for  # noqa: E402

TRIES = 5
REFUSED_KEY = "refused this client's key"
REFUSED_HANDSHAKE = "refused the handshake"


def make_key(directory, name):
    r = subprocess.run([CLI, "keys", "new", "--name", name, "--out", directory], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(directory, f"{name}.pub")) as f:
        public = f.read().strip()
    assert r.stdout.startswith(f'"{public}"'), r.stdout
    return os.path.join(directory, f"{name}.key"), public


def trust_config(keys, agencies, people=()):
    """The YAML for a CURVE broker: agencies {id: [names of their keys]}, people (name, role, [agencies])."""
    kinds = {"health": "HEALTH", "housing": "HOUSING", "social-care": "SOCIAL_CARE"}
    out = f"broker:\n  key_file: {keys['broker'][0]}\nagencies:\n"
    for agency, names in agencies.items():
        listed = ", ".join(f'"{keys[n][1]}"' for n in names)
        out += f"  - {{id: {agency}, kind: {kinds[agency]}, name: {agency}, keys: [{listed}]}}\n"
    if people:
        out += "people:\n"
        for name, role, of in people:
            tied = f", agencies: [{', '.join(of)}]" if of else ""
            out += f'  - {{name: {name}, role: {role}{tied}, key: "{keys[name][1]}"}}\n'
    return out


class Trust(BrokerTest):
    def setUp(self):
        super().setUp()
        self.keydir = os.path.join(self.tmp, "keys")
        self.keys = {n: make_key(self.keydir, n) for n in
                     ("broker", "health", "housing", "social", "alice", "olive", "lena", "mallory")}
        self.agencies = {"health": ["health"], "housing": ["housing"], "social-care": ["social"]}
        self.people = [("alice", "coordinator", ["health"]), ("olive", "operator", []), ("lena", "lead", [])]

    def start(self, env=None):
        self.b = self.broker(config=trust_config(self.keys, self.agencies, self.people), env=env)
        return self.b

    def as_key(self, name, *args, endpoint=None, input=None, timeout=30):
        """The CLI with name's key (None: no keys at all)."""
        keys = ["--key", self.keys[name][0], "--broker-key", self.keys["broker"][1]] if name else []
        return self.b.cli("--broker", endpoint or self.b.endpoint, *keys, *args, input=input, timeout=timeout)

    def accepted(self, name, endpoint=None):
        """How many of TRIES status requests with name's key were answered."""
        n = 0
        for _ in range(TRIES):
            r = self.as_key(name, "status", "--json", endpoint=endpoint)
            if r.returncode == 0:
                n += 1
            else:
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(REFUSED_KEY if name else REFUSED_HANDSHAKE, r.stderr)
        return n

    def test_only_registered_keys_get_past_the_handshake(self):
        self.start()
        for where, endpoint in (("endpoint", self.b.endpoint), ("queries", self.b.queries)):
            registered, unregistered, null = (self.accepted(k, endpoint) for k in ("health", "mallory", None))
            print(f"\nhandshake on broker.{where}: registered accepted {registered}/{TRIES}, "
                  f"unregistered accepted {unregistered}/{TRIES}, NULL security accepted {null}/{TRIES}")
            self.assertEqual((registered, unregistered, null), (TRIES, 0, 0))
        self.assertIn("zap: refused a handshake from 127.0.0.1: the key is not in the configuration", self.b.log())
        # The published key's owner is named in the log by fingerprint only, never by key or secret.
        with open(self.keys["mallory"][0]) as f:
            self.assertNotIn(f.read().split()[-1], self.b.log())

    def test_an_adapter_with_an_unknown_key_exits_2_saying_so(self):
        self.start()
        r = subprocess.run([os.path.join(BIN, "carebridge-housing"), "--broker", self.b.endpoint,
                            "--data", os.path.join(self.tmp, "housing"), "--inbox", os.path.join(self.tmp, "inbox"),
                            "--key", self.keys["mallory"][0], "--broker-key", self.keys["broker"][1]],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(REFUSED_KEY, r.stderr)

    def test_without_its_zap_handler_the_broker_lets_no_one_in(self):
        self.start(env={"CAREBRIDGE_TEST_NO_ZAP": "1"})
        registered, unregistered, null = (self.accepted(k) for k in ("health", "mallory", None))
        print(f"\nno ZAP handler: registered accepted {registered}/{TRIES}, unregistered accepted "
              f"{unregistered}/{TRIES}, NULL security accepted {null}/{TRIES}")
        self.assertEqual((registered, unregistered, null), (0, 0, 0))

    def test_a_reload_adds_and_revokes_keys_without_a_restart(self):
        self.start()
        receiver = subprocess.Popen(
            [CLI, "--broker", self.b.endpoint, "--key", self.keys["housing"][0], "--broker-key",
             self.keys["broker"][1], "recv", "--as", "housing", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: self.status_of("health")["housing"].get("connected"), 20, "housing's receiver")
            self.assertEqual(self.accepted("mallory"), 0)
            # mallory's key becomes social care's second key; housing's is revoked.
            self.agencies = {"health": ["health"], "housing": [], "social-care": ["social", "mallory"]}
            self.rewrite_config()
            self.b.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "key was revoked" in self.b.log(), 20, "the reload's log line")
            out, err = receiver.communicate(timeout=30)
            self.assertEqual(receiver.returncode, 2, err)
            self.assertIn(REFUSED_KEY, err)
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()
        revoked, added, kept = self.accepted("housing"), self.accepted("mallory"), self.accepted("health")
        print(f"\nafter a reload: revoked reconnect accepted {revoked}/{TRIES}, added accepted {added}/{TRIES}, "
              f"kept accepted {kept}/{TRIES}")
        self.assertEqual((revoked, added, kept), (0, TRIES, TRIES))
        self.assertFalse(self.status_of("health")["housing"].get("connected"))
        self.assertEqual(self.b.proc.poll(), None)

    def rewrite_config(self):
        with open(self.b.config) as f:
            text = f.read()
        head = text[:text.index("broker:\n")]
        with open(self.b.config, "w") as f:
            f.write(head + trust_config(self.keys, self.agencies, self.people))

    def status_of(self, name):
        r = self.as_key(name, "status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {a["id"]: a for a in json.loads(r.stdout)["agencies"]}

    def test_a_key_acts_only_as_its_own_agency(self):
        self.start()
        events_before = self.events()
        sent = self.as_key("health", "send", "--as", "housing", "--timeout", "5", "-",
                           input=ndjson([referral("as-housing-1", sender="housing", to=("health",))]))
        self.assertEqual(sent.returncode, 2, sent.stdout + sent.stderr)
        self.assertIn("AGENCY_MISMATCH", sent.stderr)
        sent = self.as_key("health", "send", "--as", "health", "-",
                           input=ndjson([referral("as-housing-2", sender="housing", to=("health",))]))
        self.assertEqual(sent.returncode, 1, sent.stdout + sent.stderr)
        self.assertEqual(parse_send(sent.stdout)["as-housing-2"][:2], ("NACK", "AGENCY_MISMATCH"))
        taken = self.as_key("health", "recv", "--as", "housing", "--timeout", "3")
        self.assertEqual(taken.returncode, 2, taken.stderr)
        self.assertIn("NOT_YOUR_QUEUE", taken.stderr)
        for person in ("alice", "olive"):
            hello = self.as_key(person, "recv", "--as", "health", "--timeout", "3")
            self.assertEqual(hello.returncode, 2, hello.stderr)
            self.assertIn("NOT_PERMITTED", hello.stderr)
        self.assertEqual(self.events(), events_before)
        # An event really for housing, and an acknowledgement of it from health's key.
        sent = self.as_key("social", "send", "--as", "social-care", "-",
                           input=ndjson([referral("for-housing", sender="social-care", to=("housing",))]))
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        seq = parse_send(sent.stdout)["for-housing"][1]
        env = dict(os.environ, CAREBRIDGE_KEY=self.keys["health"][0], CAREBRIDGE_BROKER_KEY=self.keys["broker"][1])
        r = subprocess.run([RAWFRAME, self.b.endpoint, "--as", "health",
                            (field(1, 7) + field(16, field(1, seq))).hex()],
                           capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"code":"NOT_IN_FLIGHT"', r.stdout.replace(" ", ""))
        self.assertEqual(self.status_of("health")["housing"]["queued"], "1")
        # Each refusal above is in the audit, as the operator reads it.
        refused = [(a["who"], a["action"], a["code"]) for a in self.audit("olive") if a["decision"] == "REFUSED"]
        for expected in [("health", "hello", "AGENCY_MISMATCH"), ("health", "hello", "NOT_YOUR_QUEUE"),
                         ("health", "publish", "AGENCY_MISMATCH"), ("alice", "hello", "NOT_PERMITTED"),
                         ("olive", "hello", "NOT_PERMITTED"), ("health", "deliveryAck", "NOT_IN_FLIGHT")]:
            self.assertIn(expected, refused)

    def audit(self, name, *args):
        r = self.as_key(name, "audit", "--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def journey(self, name, *who):
        return self.as_key(name, "journey", *who, "--json")

    def test_a_journey_is_answered_only_within_need_to_know(self):
        self.start()
        p, q = "9434765919", "4010232137"
        sent = self.as_key("health", "send", "--as", "health", "-",
                           input=ndjson([referral("p-ref", sender="health", to=("social-care",), nhs=p)]))
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        sent = self.as_key("social", "send", "--as", "social-care", "-",
                           input=ndjson([referral("q-ref", sender="social-care", to=("housing",), nhs=q)]))
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        answered = {}
        for name in ("health", "social", "housing", "alice", "olive", "lena"):
            answered[name] = 0
            for _ in range(TRIES):
                r = self.journey(name, p)
                if r.returncode == 0:
                    answered[name] += 1
                    self.assertEqual([s["event"]["eventId"] for s in json.loads(r.stdout)["steps"]], ["p-ref"])
                else:
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertIn("NOT_PERMITTED", r.stderr)
        print(f"\njourneys for a person known only to health and social care ({TRIES} each): "
              + ", ".join(f"{k} answered {v}" for k, v in answered.items()))
        self.assertEqual(answered, {"health": TRIES, "social": TRIES, "housing": 0, "alice": TRIES, "olive": 0,
                                    "lena": 0})
        # Nothing about whether a person exists: someone else's and no one's are refused alike.
        theirs, nobodys = self.journey("housing", p), self.journey("housing", "9999999999")
        self.assertEqual(theirs.stderr, nobodys.stderr)
        # A person housing may see cannot carry in one it may not.
        self.assertEqual(self.journey("housing", q).returncode, 0)
        mixed = self.journey("housing", q, "--local", "x:y")
        self.assertEqual(mixed.returncode, 0, mixed.stderr)
        sent = self.as_key("health", "send", "--as", "health", "-", input=ndjson([
            referral("p-local", sender="health", to=("social-care",), nhs=p,
                     person={"nhsNumber": p, "localIds": [{"system": "pas", "value": "H1"}]})]))
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        borrowed = self.journey("housing", q, "--local", "pas:H1")
        self.assertEqual(borrowed.returncode, 1, borrowed.stdout)
        self.assertIn("NOT_PERMITTED", borrowed.stderr)
        # Flags: a person's only within need-to-know, the rest only the key's agencies'.
        self.assertNotEqual(self.as_key("housing", "flags", "--person", p).returncode, 0)
        r = self.as_key("housing", "flags", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        flags = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertTrue(flags)
        self.assertTrue(all("housing" in f["agencies"] for f in flags), flags)
        # Every answer and refusal above is one audit record.
        records = [a for a in self.audit("olive", "--person", p) if a["action"] == "journey"]
        by = {}
        for a in records:
            by.setdefault((a["who"], a["decision"]), 0)
            by[(a["who"], a["decision"])] += 1
        print(f"audit records of those journeys: {sorted(by.items())}")
        self.assertEqual(by[("health", "PERMITTED")], TRIES)
        self.assertEqual(by[("social-care", "PERMITTED")], TRIES)
        self.assertEqual(by[("alice", "PERMITTED")], TRIES)
        self.assertEqual(by[("housing", "REFUSED")], TRIES + 1)
        self.assertEqual(by[("olive", "REFUSED")], TRIES)
        self.assertEqual(by[("lena", "REFUSED")], TRIES)
        self.assertTrue(all(a["person"].startswith("p-") and p not in json.dumps(a) for a in records))
        # The same person found by a local system's id: the same records.
        by_local = [a for a in self.audit("olive", "--local", "pas:H1") if a["action"] == "journey"]
        self.assertEqual(sorted(json.dumps(a, sort_keys=True) for a in by_local),
                         sorted(json.dumps(a, sort_keys=True) for a in records))
        # Who may read the audit: an operator all; an agency one of its people; a lead nothing.
        self.assertEqual(self.as_key("health", "audit", "--person", p).returncode, 0)
        self.assertEqual(self.as_key("housing", "audit", "--person", p).returncode, 1)
        self.assertEqual(self.as_key("health", "audit").returncode, 1)
        self.assertEqual(self.as_key("lena", "audit").returncode, 1)

    def test_every_read_is_audited_before_it_is_answered_even_across_kill_9(self):
        self.start()
        p = "9434765919"
        sent = self.as_key("health", "send", "--as", "health", "-",
                           input=ndjson([referral("k-ref", sender="health", to=("social-care",), nhs=p)]))
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        answered = 0
        for round_ in range(3):
            for _ in range(TRIES):
                answered += self.journey("social", p).returncode == 0
            self.assertEqual(self.journey("housing", p).returncode, 1)
            self.b.kill9()
            self.b.start()
        records = [a for a in self.audit("olive", "--person", p) if a["action"] == "journey"]
        permitted = sum(a["decision"] == "PERMITTED" for a in records)
        refused = sum(a["decision"] == "REFUSED" for a in records)
        print(f"\nacross 3 kill -9s: {answered} journeys answered, {permitted} audited as permitted; "
              f"3 refused, {refused} audited as refused")
        self.assertEqual((permitted, refused), (answered, 3))
        # A delivery is a read too: social care's receiver, audited with its key.
        r = self.as_key("social", "recv", "--as", "social-care", "--count", "1", "--timeout", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        deliveries = [a for a in self.audit("olive", "--person", p) if a["action"] == "delivery"]
        self.assertTrue(deliveries)
        self.assertEqual(deliveries[0]["who"], "social-care")
        self.assertEqual(len(deliveries[0]["fingerprint"]), 16)

    def test_the_feed_carries_only_what_the_key_may_see(self):
        self.start()
        def tail(name, agency, count):
            return subprocess.Popen([CLI, "--broker", self.b.endpoint, "--feed", self.b.feed, "--key",
                                     self.keys[name][0], "--broker-key", self.keys["broker"][1], "tail",
                                     "--agency", agency, "--count", str(count), "--timeout", "4"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        own, others = tail("housing", "housing", 1), tail("housing", "health", 1)
        time.sleep(1.5)  # the subscriptions reach the broker (tail's connection is up once it has said so)
        sent = self.as_key("social", "send", "--as", "social-care", "-", input=ndjson([
            referral("f-1", sender="social-care", to=("housing", "health"))]))
        self.assertEqual(sent.returncode, 0, sent.stdout + sent.stderr)
        out_own, _ = own.communicate(timeout=30)
        out_others, _ = others.communicate(timeout=30)
        print(f"\nfeed: housing's key on housing's topic got {len(out_own.splitlines())}, "
              f"on health's got {len(out_others.splitlines())}")
        self.assertEqual(own.returncode, 0)
        self.assertEqual(len(out_own.splitlines()), 1)
        self.assertEqual(out_others, "")
        self.assertEqual(others.returncode, 1)
        self.assertIn("feed: refused a subscription to 'health.' by housing", self.b.log())
        subs = [(a["who"], a["decision"]) for a in self.audit("olive") if a["action"] == "subscribe"]
        self.assertIn(("housing", "PERMITTED"), subs)
        self.assertIn(("housing", "REFUSED"), subs)

    def events(self):
        r = self.as_key("olive", "status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout).get("events", "0")


class DroppingProxy:
    """A TCP proxy to the broker that drops its first `drops` connections as
    soon as they are made (mid-handshake, to the client), and carries the
    rest through."""

    def __init__(self, target, drops):
        host, port = target.rsplit("/", 1)[-1].rsplit(":", 1)
        self.target = (host, int(port))
        self.drops = drops
        self.dropped = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.endpoint = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.dropped < self.drops:
                self.dropped += 1
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.running = False
        self.server.close()
        self.thread.join(timeout=5)


class Handshake(BrokerTest):
    def test_a_connection_dropped_mid_handshake_is_not_a_refusal(self):
        """A broker restarting drops a connection mid-handshake: the client
        tries again and is answered. Only drops that go on, with no
        handshake succeeding, are taken as a refusal (as by a CURVE broker
        whose ZAP handler is missing)."""
        b = self.broker()
        for drops, want in ((1, 0), (2, 0), (50, 2)):
            proxy = DroppingProxy(b.endpoint, drops)
            try:
                r = b.cli("--broker", proxy.endpoint, "status", "--json", timeout=30)
            finally:
                proxy.close()
            print(f"\n{drops} connection(s) dropped mid-handshake: exit {r.returncode} after {proxy.dropped} drops")
            self.assertEqual(r.returncode, want, r.stderr)
            if want:
                self.assertIn(REFUSED_HANDSHAKE, r.stderr)


class Exposure(BrokerTest):
    def test_without_curve_the_broker_binds_loopback_only(self):
        workdir = os.path.join(self.tmp, "open")
        os.makedirs(workdir)
        r = subprocess.run([BROKER, "--data", os.path.join(workdir, "data"), "--endpoint", "tcp://0.0.0.0:*",
                            "--feed", "tcp://127.0.0.1:*", "--queries", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("broker.endpoint tcp://0.0.0.0:* is reachable from other machines, and CURVE is off", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(workdir, "data")))

    def test_a_broker_key_open_to_others_stops_start_up_naming_it(self):
        keydir = os.path.join(self.tmp, "keys")
        key, _ = make_key(keydir, "broker")
        os.chmod(key, 0o644)
        config = os.path.join(self.tmp, "c.yaml")
        with open(config, "w") as f:
            f.write(f"broker:\n  key_file: {key}\n")
        r = subprocess.run([BROKER, "--config", config, "--data", os.path.join(self.tmp, "data"),
                            "--endpoint", "tcp://127.0.0.1:*", "--feed", "tcp://127.0.0.1:*",
                            "--queries", "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"the key file {key} is open to others (mode 644)", r.stderr)


class DataAtRest(BrokerTest):
    def test_the_store_is_private_and_a_broker_refuses_one_that_is_not(self):
        b = self.broker()
        self.assertEqual(b.send("health", [referral("at-rest-1")]).returncode, 0)
        self.assertEqual(b.stop(), 0)
        self.assertEqual(os.stat(b.data).st_mode & 0o777, 0o700)
        files = sorted(os.listdir(b.data))
        self.assertIn("data.mdb", files)
        for name in files:
            self.assertEqual(os.stat(os.path.join(b.data, name)).st_mode & 0o077, 0, name)
        os.chmod(b.data, 0o755)
        with self.assertRaises(AssertionError) as refused:
            b.start()
        self.assertIn(f"the data directory {b.data} is open to others (mode 755)", str(refused.exception))
        os.chmod(b.data, 0o700)
        os.chmod(os.path.join(b.data, "data.mdb"), 0o644)
        with self.assertRaises(AssertionError) as refused:
            b.start()
        self.assertIn(f"{b.data}/data.mdb in the data directory is open to others (mode 644)", str(refused.exception))
        os.chmod(os.path.join(b.data, "data.mdb"), 0o600)
        b.start()
        self.assertEqual(b.send("health", [referral("at-rest-2")]).returncode, 0)

    def test_an_adapter_refuses_an_outbox_others_may_read(self):
        b = self.broker()
        data = os.path.join(self.tmp, "housing")
        argv = [os.path.join(BIN, "carebridge-housing"), "--broker", b.endpoint, "--data", data,
                "--inbox", os.path.join(self.tmp, "inbox")]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        box = os.path.join(data, "outbox.lmdb")
        wait_for(lambda: os.path.exists(os.path.join(box, "data.mdb")), 20, "the outbox")
        proc.terminate()
        proc.communicate(timeout=20)
        self.assertEqual(os.stat(box).st_mode & 0o777, 0o700)
        os.chmod(box, 0o755)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"the outbox {box} is open to others (mode 755)", r.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
