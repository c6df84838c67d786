"""A third party's adapter: `cmake --install` into a temporary prefix, the small
adapter in examples/adapter/ compiled with nothing but the installed header,
library and pkg-config file, and run against the real broker: what it keeps is
acknowledged, what is addressed to its agency is delivered to it."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SRC, BrokerTest, referral  # noqa: E402


def sanitize_flags(build):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        m = re.search(r"^CB_SANITIZE:STRING=(.*)$", f.read(), re.M)
    return [f"-fsanitize={m.group(1)}"] if m and m.group(1) else []


class Install(BrokerTest):
    def test_an_adapter_built_against_the_installed_library_publishes_and_receives(self):
        build = os.path.dirname(os.path.abspath(BIN))
        prefix = os.path.join(self.tmp, "prefix")
        r = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "carebridge-adapter"], capture_output=True,
                               text=True, env=env, timeout=30)
        self.assertEqual(flags.returncode, 0, flags.stderr)
        self.assertIn(prefix, flags.stdout)  # the installed copy, not the source tree
        exe = os.path.join(self.tmp, "line-adapter")
        src = os.path.join(SRC, "examples", "adapter", "line_adapter.c")
        r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", src, *flags.stdout.split(), *sanitize_flags(build),
                            "-o", exe], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)

        b = self.broker()
        r = b.send("health", [referral("hx-for-voluntary", to=("voluntary",))])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        mine = referral("vol-1", sender="voluntary", to=("social-care",))
        r = subprocess.run([exe, b.endpoint, "voluntary", os.path.join(self.tmp, "outbox")],
                           input=json.dumps(mine) + "\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertIn("kept vol-1 1", lines)
        self.assertTrue(any(line.startswith("accepted 1 flags=") and "INTER_AGENCY_HANDOFF" in line for line in lines),
                        lines)
        delivered = [json.loads(line) for line in lines if line.startswith("{")]
        self.assertEqual([e["eventId"] for e in delivered], ["hx-for-voluntary"])
        r, got = b.recv("social-care", "--count", "1", "--timeout", "10")
        self.assertEqual(got[0]["eventId"], "vol-1")


if __name__ == "__main__":
    import unittest

    unittest.main()
