"""What every integration test needs: the real broker process in a temporary
data directory on free loopback ports below the ephemeral range (quiet_port),
the real CLI, and a few event builders. Every wait polls with a deadline;
nothing sleeps blindly."""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BIN = os.environ.get("CB_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
SRC = os.environ.get("CB_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BROKER = os.path.join(BIN, "carebridge-broker")
CLI = os.path.join(BIN, "carebridge")
RAWFRAME = os.path.join(BIN, "cb-test-rawframe")

DEFAULT_LIMITS = {
    "max_event_bytes": 262144,
    "window": 128,
    "redelivery_timeout_ms": 10000,
    "redelivery_max_ms": 300000,
    "max_attempts": 5,
    "heartbeat_ms": 2000,
}


def fault_injection_env(fifo_prefix):
    """What fiu-run -x sets up, built here so that a sanitizer build keeps its
    runtime first in LD_PRELOAD (fiu-run would put libfiu's first)."""
    preload = ["/usr/lib/fiu/fiu_run_preload.so", "/usr/lib/fiu/fiu_posix_preload.so"]
    ldd = subprocess.run(["ldd", BROKER], capture_output=True, text=True).stdout
    runtimes = ("libasan.so", "libtsan.so")
    preload = [line.split("=>")[1].split()[0] for line in ldd.splitlines() if any(r in line for r in runtimes)] + preload
    return {"FIU_ENABLE": "", "FIU_CTRL_FIFO": fifo_prefix, "LD_PRELOAD": " ".join(preload)}


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def quiet_port():
    """A free loopback port below the kernel's ephemeral range. A process
    restarted on the port it had (the broker, an adapter) must find it
    free: one the kernel picked (bind to port 0) it may give meanwhile to
    any outgoing connection of a test running beside it."""
    high = _ephemeral_low() - 1
    low = max(1025, high - 12000)
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free loopback port below the ephemeral range")


IN_USE = "Address already in use"


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_logged(argv, log_path, ready, what, env=None):
    """Start a process of ours with its stderr in log_path and wait, with a
    deadline, for the line matching ready; the process and the match."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, env=env)

    def readiness():
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise AssertionError(f"{what} exited {proc.returncode}:\n{f.read()}")
        with open(log_path, errors="replace") as f:
            return re.search(ready, f.read())

    return proc, wait_for(readiness, 20, f"{what}'s ready line")


class Broker:
    """One broker process. start() may be called again after kill9() or stop():
    the restart keeps the data directory and the endpoint it bound first."""

    def __init__(self, workdir, map_size_mb=64, publish_fill_percent=90, wrapper=(), env=None, data=None, args=(),
                 config="", **limits):
        self.workdir = workdir
        self.extra_env = env or {}
        self.data = data or os.path.join(workdir, "data")
        self.config = os.path.join(workdir, "carebridge.yaml")
        self.wrapper = list(wrapper)
        self.args = list(args)
        self.proc = None
        self._pick_ports()
        self.starts = 0
        lim = dict(DEFAULT_LIMITS, **limits)
        with open(self.config, "w") as f:
            f.write(
                "store:\n"
                f"  map_size_mb: {map_size_mb}\n"
                f"  publish_fill_percent: {publish_fill_percent}\n"
                "limits:\n" + "".join(f"  {k}: {v}\n" for k, v in lim.items()) + config
            )

    @property
    def log_path(self):
        return os.path.join(self.workdir, f"broker-{self.starts}.log")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def all_logs(self):
        out = ""
        for i in range(1, self.starts + 1):
            with open(os.path.join(self.workdir, f"broker-{i}.log"), errors="replace") as f:
                out += f.read()
        return out

    def _pick_ports(self):
        self.endpoint, self.feed, self.queries = (f"tcp://127.0.0.1:{quiet_port()}" for _ in range(3))
        self.metrics = "127.0.0.1:0"  # any free port; the restarts keep the one bound first

    def start(self):
        self.starts += 1
        for attempt in range(5):
            try:
                self.proc, m = start_logged(
                    self.wrapper
                    + [BROKER, "--config", self.config, "--data", self.data,
                       "--endpoint", self.endpoint, "--feed", self.feed, "--queries", self.queries,
                       "--metrics", self.metrics] + self.args,
                    self.log_path, r"ready endpoint=(\S+) feed=(\S+) queries=(\S+) metrics=(\S+)", "the broker",
                    env=dict(os.environ, **self.extra_env))
                break
            except AssertionError as e:  # a port taken since it was picked: at the first start, others
                if self.starts > 1 or attempt == 4 or IN_USE not in str(e):
                    raise
                self._pick_ports()
        self.endpoint, self.feed, self.queries, self.metrics = m.group(1), m.group(2), m.group(3), m.group(4)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        return self.proc.returncode

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def env(self):
        return dict(os.environ, CAREBRIDGE_BROKER=self.endpoint, CAREBRIDGE_FEED=self.feed)

    def cli(self, *args, input=None, timeout=60):
        return subprocess.run([CLI, *args], input=input, capture_output=True, text=True,
                              env=self.env(), timeout=timeout)

    def cli_bg(self, *args, stdout, stdin=None, stderr=subprocess.DEVNULL):
        return subprocess.Popen([CLI, *args], stdout=stdout, stderr=stderr, stdin=stdin,
                                text=True, env=self.env())

    def send(self, agency, events, *extra, timeout=60):
        return self.cli("send", "--as", agency, *extra, "-", input=ndjson(events), timeout=timeout)

    def recv(self, agency, *extra, timeout=60):
        r = self.cli("recv", "--as", agency, *extra, timeout=timeout)
        return r, [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def status(self, *via):
        r = self.cli("status", "--json", *via)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        return s, {a["id"]: a for a in s.get("agencies", [])}

    def journey(self, person, *via):
        r = self.cli("journey", person, "--json", *via)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout).get("steps", [])

    def flags(self, *filters):
        r = self.cli("flags", "--json", *filters)
        if r.returncode != 0:
            raise AssertionError(f"carebridge flags failed: {r.stderr}")
        return [json.loads(line) for line in r.stdout.splitlines()]

    def report(self, *filters):
        r = self.cli("report", "--json", *filters)
        if r.returncode != 0:
            raise AssertionError(f"carebridge report failed: {r.stderr}")
        return [json.loads(line) for line in r.stdout.splitlines()]

    def raw(self, *hex_frames, agency=None, endpoint=None):
        args = [RAWFRAME, endpoint or self.endpoint] + (["--as", agency] if agency else []) + list(hex_frames)
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) if line != "TIMEOUT" else None for line in r.stdout.splitlines()]


def keep_logs(tmp, test_id):
    """Every log a test's processes wrote, copied to $CB_LOG_DIR (when set) for
    tests/tools/logscan.py, which fails the suite if any line names a person."""
    dest_root = os.environ.get("CB_LOG_DIR")
    if not dest_root:
        return
    dest = os.path.join(dest_root, test_id)
    for dirpath, _, filenames in os.walk(tmp):
        for name in filenames:
            if name.endswith(".log"):
                rel = os.path.relpath(os.path.join(dirpath, name), tmp).replace(os.sep, "__")
                os.makedirs(dest, exist_ok=True)
                shutil.copyfile(os.path.join(dirpath, name), os.path.join(dest, rel))


class BrokerTest(unittest.TestCase):
    """Gives each test a temporary directory, and stops its brokers after it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="carebridge-test-")
        self.brokers = []

    def tearDown(self):
        for b in self.brokers:
            if b.proc and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait()
        keep_logs(self.tmp, self.id())
        if self._outcome_ok():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            for b in self.brokers:
                print(f"--- broker log ({b.log_path}) ---\n{b.all_logs()[-4000:]}")

    def _outcome_ok(self):
        outcome = getattr(self, "_outcome", None)
        errors = getattr(outcome, "errors", None) or []
        return not any(err for _, err in errors) and getattr(outcome, "success", True)

    def broker(self, **kw):
        b = Broker(tempfile.mkdtemp(dir=self.tmp), **kw)
        self.brokers.append(b)
        return b.start()


# ---------------------------------------------------------------- events

NHS = "9434765919"


def referral(event_id, sender="health", to=("social-care",), nhs=NHS, reason="home support after a fall", **extra):
    ev = {
        "eventId": event_id,
        "person": {"nhsNumber": nhs},
        "caseRef": "W7-1",
        "fromAgency": sender,
        "toAgencies": list(to),
        "occurredAt": "2026-11-20T09:30:00Z",
        "referral": {"reason": reason, "urgency": "URGENT",
                     "outcomes": [{"category": "CHANGE", "statement": "walk to the shops"}]},
    }
    ev.update(extra)
    return ev


def response(event_id, answers, status, sender="social-care", to=("health",), nhs=NHS, **body):
    return {
        "eventId": event_id,
        "correlationId": answers,
        "person": {"nhsNumber": nhs},
        "fromAgency": sender,
        "toAgencies": list(to),
        "occurredAt": "2026-11-20T11:00:00Z",
        "response": dict(status=status, **body),
    }


def ndjson(events):
    return "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events)


def parse_send(stdout):
    """{eventId: ("ACK", seq) or ("NACK", code, reason)} from `carebridge send`."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("ACK "):
            _, eid, seq = line.split()[:3]
            out[eid] = ("ACK", int(seq.split("=")[1]))
        elif line.startswith("NACK "):
            m = re.match(r"NACK (\S+) (\w+): (.*)", line)
            out[m.group(1)] = ("NACK", m.group(2), m.group(3))
    return out


# ------------------------------------------- protobuf by hand, for raw frames

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    """A protobuf field: int -> varint, bytes/str -> length-delimited."""
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint((num << 3) | 2) + varint(len(value)) + value


def raw_publish(ref, event_id=b"raw-1", reason=b"home support", sender=b"health", to=b"social-care"):
    """Frame{ref, publish{event{...referral{reason}}}} with any bytes in reason."""
    person = field(1, NHS)
    when = field(1, 1763631000)
    event = (field(1, event_id) + field(2, person) + field(4, sender) + field(5, to) +
             field(6, when) + field(10, field(1, reason)))
    return (field(1, ref) + field(12, field(1, event))).hex()


# ---------------------------------------------------------------- adapters

class Adapter:
    """One adapter process (carebridge-health, -social, -housing) with its own
    data directory, talking to a broker. start() again after kill9() or
    stop() keeps the data directory: the outbox is what must survive."""

    def __init__(self, name, workdir, broker, args=(), ready=r"port (\d+)", env=None):
        self.exe = os.path.join(BIN, name)
        self.extra_env = env or {}
        self.workdir = workdir
        self.data = os.path.join(workdir, "data")
        self.broker = broker
        self.args = list(args)
        self.ready = ready
        self.proc = None
        self.port = None
        self.starts = 0

    @property
    def log_path(self):
        return os.path.join(self.workdir, f"adapter-{self.starts}.log")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def start(self, listen="127.0.0.1:0"):
        self.starts += 1
        for attempt in range(5):
            # A restart listens where the first start did: a quiet port, not one the kernel picked.
            port = self.port if self.port is not None else quiet_port() if listen == "127.0.0.1:0" else None
            listen_args = ["--listen", f"127.0.0.1:{port}" if port is not None else listen] if listen else []
            try:
                self.proc, m = start_logged(
                    [self.exe, "--broker", self.broker.endpoint, "--data", self.data] + listen_args + self.args,
                    self.log_path, self.ready, os.path.basename(self.exe), env=dict(os.environ, **self.extra_env))
                break
            except AssertionError as e:
                if self.port is not None or attempt == 4 or IN_USE not in str(e) and "cannot listen" not in str(e):
                    raise
        if m.groups():
            self.port = int(m.group(1))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        return self.proc.returncode

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)


class AdapterTest(BrokerTest):
    def setUp(self):
        super().setUp()
        self.adapters = []

    def tearDown(self):
        ok = self._outcome_ok()
        unclean = []
        for a in self.adapters:
            if a.proc and a.proc.poll() is None:
                try:  # a clean stop: under ASan this is where a leak shows
                    if a.stop() != 0:
                        unclean.append(f"{os.path.basename(a.exe)} exited {a.proc.returncode} on SIGTERM")
                except subprocess.TimeoutExpired:
                    a.proc.kill()
                    a.proc.wait()
                    unclean.append(f"{os.path.basename(a.exe)} did not stop on SIGTERM")
            if not ok or unclean:
                print(f"--- {os.path.basename(a.exe)} log ---\n{a.log()[-4000:]}")
        super().tearDown()
        if ok and unclean:
            self.fail("; ".join(unclean))

    def adapter(self, name, broker, args=(), **kw):
        a = Adapter(name, tempfile.mkdtemp(dir=self.tmp), broker, args, **kw)
        self.adapters.append(a)
        return a
