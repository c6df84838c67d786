"""TLS on the FHIR server (carebridge-social): HTTPS with TLS 1.2 or 1.3 only,
callers proven by a bearer token or a client certificate, plain HTTP on
loopback only, and a certificate or key that cannot be trusted stopping
start-up. Certificates made with openssl, fetched with curl."""

import os
import socket
import ssl
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, AdapterTest  # noqa: E402
from test_health import a03, frame  # noqa: E402

SOCIAL = os.path.join(BIN, "carebridge-social")
TOKEN = "a-token-from-the-configuration"


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


class Pki(AdapterTest):
    """Certificates for each test: the server's, an expired one, a key of no
    certificate's, a CA with its client, and a stranger."""

    def setUp(self):
        super().setUp()
        self.pki = os.path.join(self.tmp, "pki")
        os.makedirs(self.pki)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", "server.key", "-out", "server.pem", "-days", "2",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", cwd=self.pki)
        openssl("req", "-new", "-key", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=self.pki)
        openssl("x509", "-req", "-in", "server.csr", "-signkey", "server.key", "-days", "-1", "-out", "expired.pem",
                cwd=self.pki)
        openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key",
                cwd=self.pki)
        # A CA of the social care system's own, its client's certificate, and a stranger's.
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=care CA",
                cwd=self.pki)
        openssl("req", "-new", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=care system",
                cwd=self.pki)
        openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", "client.pem", cwd=self.pki)
        openssl("req", "-x509", *ec, "-keyout", "stranger.key", "-out", "stranger.pem", "-days", "2",
                "-subj", "/CN=stranger", cwd=self.pki)
        for name in os.listdir(self.pki):
            if name.endswith(".key"):
                os.chmod(os.path.join(self.pki, name), 0o600)
        self.tokens = os.path.join(self.pki, "tokens")
        with open(self.tokens, "w") as f:
            f.write(f"# callers of the FHIR server\n{TOKEN}\n")
        os.chmod(self.tokens, 0o600)
        self.b = self.broker()

    def pem(self, name):
        return os.path.join(self.pki, name)



class Tls(Pki):
    def social(self, *args):
        a = self.adapter("carebridge-social", self.b, args=list(args))
        return a.start()

    def curl(self, url, *args):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *args, url],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout

    def test_https_answers_callers_who_prove_who_they_are(self):
        s = self.social("--tls-cert", self.pem("server.pem"), "--tls-key", self.pem("server.key"),
                        "--token-file", self.tokens, "--client-ca", self.pem("ca.pem"))
        url = f"https://127.0.0.1:{s.port}/fhir/metadata"
        ca = ["--cacert", self.pem("server.pem")]
        results = {
            "token": self.curl(url, *ca, "-H", f"Authorization: Bearer {TOKEN}"),
            "client certificate": self.curl(url, *ca, "--cert", self.pem("client.pem"), "--key",
                                            self.pem("client.key")),
            "nothing": self.curl(url, *ca),
            "a wrong token": self.curl(url, *ca, "-H", "Authorization: Bearer guessed"),
            "a stranger's certificate": self.curl(url, *ca, "--cert", self.pem("stranger.pem"), "--key",
                                                  self.pem("stranger.key")),
            "plain HTTP on the TLS port": self.curl(f"http://127.0.0.1:{s.port}/fhir/metadata"),
            "TLS 1.1 at most": self.curl(url, *ca, "--tlsv1", "--tls-max", "1.1", "-H",
                                         f"Authorization: Bearer {TOKEN}"),
            "TLS 1.2 at most": self.curl(url, *ca, "--tls-max", "1.2", "-H", f"Authorization: Bearer {TOKEN}"),
        }
        print("\n" + "\n".join(f"  {k}: curl exit {rc}, HTTP {code}" for k, (rc, code) in results.items()))
        self.assertEqual(results["token"], (0, "200"))
        self.assertEqual(results["client certificate"], (0, "200"))
        self.assertEqual(results["TLS 1.2 at most"], (0, "200"))
        self.assertEqual(results["nothing"], (0, "401"))
        self.assertEqual(results["a wrong token"], (0, "401"))
        self.assertEqual(results["a stranger's certificate"], (0, "401"))
        self.assertNotEqual(results["plain HTTP on the TLS port"][0], 0)
        self.assertNotEqual(results["TLS 1.1 at most"][0], 0)
        self.assertIn("serving FHIR R4 at https://", s.log())
        self.assertNotIn(TOKEN, s.log())

    def refused_start(self, *args):
        r = subprocess.run([SOCIAL, "--broker", self.b.endpoint, "--data", os.path.join(self.tmp, "refused"),
                            "--listen", "127.0.0.1:0", *args], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "refused")), "a refused start makes nothing")
        return r.stderr

    def test_a_certificate_or_key_that_cannot_be_trusted_stops_start_up(self):
        key, cert = self.pem("server.key"), self.pem("server.pem")
        tls = ["--token-file", self.tokens]
        os.chmod(key, 0o644)
        self.assertIn(f"--tls-key {key} is open to others (mode 644)", self.refused_start("--tls-cert", cert,
                                                                                         "--tls-key", key, *tls))
        os.chmod(key, 0o600)
        self.assertIn(f"--tls-cert {self.pem('expired.pem')} expired at",
                      self.refused_start("--tls-cert", self.pem("expired.pem"), "--tls-key", key, *tls))
        self.assertIn(f"--tls-key {self.pem('other.key')} is not the key of the certificate",
                      self.refused_start("--tls-cert", cert, "--tls-key", self.pem("other.key"), *tls))
        os.chmod(self.tokens, 0o644)
        self.assertIn("is open to others", self.refused_start("--tls-cert", cert, "--tls-key", key, *tls))
        os.chmod(self.tokens, 0o600)
        self.assertIn("callers must prove who they are", self.refused_start("--tls-cert", cert, "--tls-key", key))

    def test_plain_http_is_served_on_loopback_only(self):
        r = subprocess.run([SOCIAL, "--broker", self.b.endpoint, "--data", os.path.join(self.tmp, "open"),
                            "--listen", "0.0.0.0:0"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("plain HTTP is served on 127.0.0.1 only", r.stderr)
        # On loopback a token, when given, is still required.
        s = self.social("--token-file", self.tokens)
        url = f"http://127.0.0.1:{s.port}/fhir/metadata"
        self.assertEqual(self.curl(url), (0, "401"))
        self.assertEqual(self.curl(url, "-H", f"Authorization: Bearer {TOKEN}"), (0, "200"))


class MllpTls(Pki):
    """MLLP over TLS (carebridge-health): each sender's certificate checked."""

    def health(self):
        a = self.adapter("carebridge-health", self.b, args=[
            "--tls-cert", self.pem("server.pem"), "--tls-key", self.pem("server.key"),
            "--client-ca", self.pem("ca.pem")])
        return a.start()

    def send_over_tls(self, port, cert=None, key=None, max_version=None, control="TLS1"):
        """The ACK to an A03 sent over TLS, or the exception that ended the try."""
        ctx = ssl.create_default_context(cafile=self.pem("server.pem"))
        if cert:
            ctx.load_cert_chain(self.pem(cert), self.pem(key))
        if max_version:
            with warnings.catch_warnings():  # an old TLS on purpose
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                ctx.maximum_version = max_version
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(frame(a03(control=control)))
                    got = b""
                    while b"\x1c\r" not in got:
                        chunk = tls.recv(4096)
                        if not chunk:
                            return "closed"
                        got += chunk
                    return got.decode(errors="replace")
        except (ssl.SSLError, OSError) as e:
            return type(e).__name__

    def test_mllp_over_tls_answers_senders_with_a_certificate_the_ca_signed(self):
        h = self.health()
        ok = self.send_over_tls(h.port, "client.pem", "client.key")
        stranger = self.send_over_tls(h.port, "stranger.pem", "stranger.key", control="TLS2")
        nobody = self.send_over_tls(h.port, control="TLS3")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tls_1_1 = ssl.TLSVersion.TLSv1_1
        old = self.send_over_tls(h.port, "client.pem", "client.key", max_version=tls_1_1, control="TLS4")
        with socket.create_connection(("127.0.0.1", h.port), timeout=10) as plain:
            plain.sendall(frame(a03(control="TLS5")))
            try:
                answer = plain.recv(4096)
            except OSError:
                answer = b""
        print(f"\n  client certificate: {'AA' if 'MSA|AA|TLS1' in ok else ok}; a stranger's: {stranger}; "
              f"none: {nobody}; TLS 1.1: {old}; plain MLLP: {answer!r}")
        self.assertIn("MSA|AA|TLS1", ok)
        for refused in (stranger, nobody, old):
            self.assertNotIn("MSA|", refused)
        self.assertNotIn(b"MSA|", answer)
        self.assertIn("mllp: refused a TLS connection", h.log())

    def test_plain_mllp_is_served_on_loopback_only_and_tls_needs_a_client_ca(self):
        for args, says in ((["--listen", "0.0.0.0:0"], "plain MLLP is served on 127.0.0.1 only"),
                           (["--tls-cert", self.pem("server.pem"), "--tls-key", self.pem("server.key")],
                            "each sender must prove itself: give --client-ca")):
            r = subprocess.run([os.path.join(BIN, "carebridge-health"), "--broker", self.b.endpoint, "--data",
                                os.path.join(self.tmp, "refused")] + (["--listen", "127.0.0.1:0"] if "--listen"
                                                                      not in args else []) + args,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(says, r.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "refused")))


if __name__ == "__main__":
    import unittest
    unittest.main()
