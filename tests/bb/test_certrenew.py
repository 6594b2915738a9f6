"""A renewed certificate, black box (issue 10): the certbot deploy hook
(etc/certbot-deploy-hook, as built) installs a renewed certificate and
key from a fake Let's Encrypt lineage and runs `xmppctl reload`; new
connections, STARTTLS and direct TLS, on every worker, are then served
the new certificate (compared by fingerprint) while connections opened
before stay up and keep exchanging stanzas.  A key that does not match
its certificate (a reload between the copy of one file and the other)
is refused by the reload with a logged reason and the old certificate
is still served; the hook itself refuses such a lineage and installs
nothing.  Needs XMPPD_TEST_PGCONN.
"""
import grp
import hashlib
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILDDIR, XMPPCTL, Client, Server,  # noqa: E402
                     run_tests, tls_server_end_point, wait_for)

HOOK = os.path.join(BUILDDIR, "etc", "certbot-deploy-hook")
USERS = [("alice@localhost", "wonder1and"), ("bob@localhost", "bu1lder!")]
NEW_CONNECTIONS = 8     # per port: enough to reach both workers


def make_lineage(root, name):
    """A certbot-style lineage dir (fullchain.pem, privkey.pem) with a
    fresh self-signed EC certificate for localhost; returns (dir, sha256
    fingerprint of the certificate)."""
    d = os.path.join(root, "live", name)
    os.makedirs(d)
    cert, key = os.path.join(d, "fullchain.pem"), os.path.join(d, "privkey.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-days", "30", "-nodes",
                    "-subj", "/CN=localhost/O=%s" % name, "-addext",
                    "subjectAltName=DNS:localhost", "-keyout", key,
                    "-out", cert], check=True, capture_output=True)
    with open(cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return d, hashlib.sha256(der).hexdigest()


def fingerprint(sock):
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def starttls_cert(port):
    """Fingerprint of the certificate a new STARTTLS connection gets."""
    c = Client(port)
    try:
        c.open()
        c.starttls()
        return fingerprint(c.sock)
    finally:
        c.close()


def direct_tls_cert(port):
    c = Client(port)
    try:
        c.wrap_tls(alpn=["xmpp-client"])
        c.open()
        return fingerprint(c.sock)
    finally:
        c.close()


def served_certs(s):
    """The fingerprints new connections get, over both ports."""
    return ({starttls_cert(s.port) for _ in range(NEW_CONNECTIONS)} |
            {direct_tls_cert(s.tls_port) for _ in range(NEW_CONNECTIONS)})


def pending_starttls(port, tls12=False):
    """A stream past STARTTLS, not yet authenticated."""
    c = Client(port)
    c.open()
    if not tls12:
        c.starttls()
        return c
    c.starttls(max_version=ssl.TLSVersion.TLSv1_2)
    assert c.sock.version() == "TLSv1.2", c.sock.version()
    return c


def finish_plus_login(c, user, password, resource):
    """SCRAM-SHA-256-PLUS over tls-server-end-point: the server's binding
    data must be the hash of the certificate this stream was served."""
    got = c.auth_scram(user, password, plus="tls-server-end-point",
                       cb_data=tls_server_end_point(c.sock))
    assert got.startswith("<success"), got
    c.open()
    c.bind(resource)


def direct_login(port, user, password, resource):
    c = Client(port)
    c.wrap_tls(alpn=["xmpp-client"])
    c.open()
    got = c.auth_scram(user, password)
    assert got.startswith("<success"), got
    c.open()
    c.bind(resource)
    return c


def ping(c, ident):
    c.send("<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
           "</iq>" % ident)
    c.read_until("<iq[^>]*id='%s'[^>]*/>|<iq[^>]*id='%s'[^>]*></iq>"
                 % (ident, ident))


def chat(frm, to_client, to_jid, ident):
    """A message from one live stream reaches another."""
    body = "renewed %s" % ident
    frm.send("<message to='%s' type='chat' id='%s'><body>%s</body></message>"
             % (to_jid, ident, body))
    got = to_client.read_until("<message[^>]*id='%s'[^>]*>.*?</message>" % ident)
    assert "<body>%s</body>" % body in got, got


def run_hook(s, lineage, tls_dir, ctl=None, env_extra=None):
    env = dict(os.environ)
    env.update({
        "RENEWED_LINEAGE": lineage,
        "RENEWED_DOMAINS": "localhost",
        "XMPPD_CERT": os.path.join(tls_dir, "cert.pem"),
        "XMPPD_KEY": os.path.join(tls_dir, "key.pem"),
        "XMPPD_GROUP": subprocess.run(["id", "-gn"], capture_output=True,
                                      text=True).stdout.strip(),
        "XMPPCTL": ctl or "%s -s %s" % (XMPPCTL, s.control),
    })
    env.update(env_extra or {})
    return subprocess.run(["sh", HOOK], env=env, capture_output=True,
                          text=True, timeout=60)


def workers_at(s, generation):
    st = s.status()
    return st and all(w["generation"] == generation for w in st["workers"])


def install_files(tls_dir, cert_src, key_src):
    shutil.copyfile(cert_src, os.path.join(tls_dir, "cert.pem"))
    shutil.copyfile(key_src, os.path.join(tls_dir, "key.pem"))


class Renewal:
    """A server on certificate A (copied like the hook would), with
    lineages A and B ready."""

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="xmppd-test-certrenew-")
        self.a, self.fp_a = make_lineage(self.root, "a")
        self.b, self.fp_b = make_lineage(self.root, "b")
        assert self.fp_a != self.fp_b
        self.tls = os.path.join(self.root, "xmppd")
        os.makedirs(self.tls)
        install_files(self.tls, os.path.join(self.a, "fullchain.pem"),
                      os.path.join(self.a, "privkey.pem"))
        self.server = Server(workers=2, users=USERS, overrides={
            "tls.certificate": os.path.join(self.tls, "cert.pem"),
            "tls.key": os.path.join(self.tls, "key.pem")})
        try:
            self.s = self.server.__enter__()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.server.__exit__(*exc)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def generation(self):
        return self.s.status()["master"]["generation"]


def test_hook_renews_without_dropping():
    """Logged-in streams on cert A (STARTTLS and direct TLS); the hook
    installs lineage B and reloads; every new connection gets B, the old
    streams still ping and message each other and the new ones."""
    with Renewal() as r:
        s = r.s
        assert served_certs(s) == {r.fp_a}
        old_st = Client(s.port)
        old_st.login("alice", USERS[0][1], "starttls")
        old_direct = direct_login(s.tls_port, "bob", USERS[1][1], "direct")
        assert fingerprint(old_st.sock) == fingerprint(old_direct.sock) == r.fp_a
        # Past the TLS handshake but not logged in yet: TLS 1.3 (xmppd's
        # own record layer) and TLS 1.2 (OpenSSL keeps the connection).
        pending13 = pending_starttls(s.port)
        pending12 = pending_starttls(s.port, tls12=True)
        gen = r.generation()
        accepted = [w["accepted"] for w in s.status()["workers"]]

        h = run_hook(s, r.b, r.tls)
        assert h.returncode == 0, h.stdout + h.stderr
        assert "reloaded" in h.stdout, h.stdout
        for name, src in (("cert.pem", "fullchain.pem"), ("key.pem", "privkey.pem")):
            with open(os.path.join(r.tls, name), "rb") as f1, \
                    open(os.path.join(r.b, src), "rb") as f2:
                assert f1.read() == f2.read(), name
        assert os.stat(os.path.join(r.tls, "key.pem")).st_mode & 0o777 == 0o640
        assert os.stat(os.path.join(r.tls, "cert.pem")).st_mode & 0o777 == 0o644
        assert not [n for n in os.listdir(r.tls) if n.startswith(".")], \
            os.listdir(r.tls)
        assert r.generation() == gen + 1
        wait_for(lambda: workers_at(s, gen + 1), what="workers on the new generation")

        assert served_certs(s) == {r.fp_b}
        # ... from every worker.
        now = [w["accepted"] for w in s.status()["workers"]]
        assert all(n > a for n, a in zip(now, accepted)), (accepted, now)
        new_st = Client(s.port)
        new_st.login("alice", USERS[0][1], "new")
        assert fingerprint(new_st.sock) == r.fp_b

        # The streams opened before the renewal are still up and served.
        assert fingerprint(old_st.sock) == r.fp_a
        ping(old_st, "p1")
        ping(old_direct, "p2")
        chat(old_st, old_direct, "bob@localhost/direct", "m1")
        chat(old_direct, old_st, "alice@localhost/starttls", "m2")
        chat(old_direct, new_st, "alice@localhost/new", "m3")
        chat(new_st, old_direct, "bob@localhost/direct", "m4")
        # Streams that did their handshake on A log in after the reload
        # with channel binding to A.
        for c, res in ((pending13, "p13"), (pending12, "p12")):
            assert fingerprint(c.sock) == r.fp_a
            finish_plus_login(c, "bob", USERS[1][1], res)
            chat(c, new_st, "alice@localhost/new", "m-" + res)
        for c in (old_st, old_direct, new_st, pending13, pending12):
            c.close()
        assert not re.search(r"TLS unavailable|not reloaded|reload failed",
                             s.log_text())


def test_mismatched_key_keeps_old_certificate():
    """Certificate B on disk with key A (a reload between the two
    copies): xmppctl reload fails with the reason and exits 1, the log
    says why, new connections still get A and open streams go on.  Then
    key B arrives and the next reload serves B.  The hook refuses a
    lineage whose key does not match and leaves the files alone."""
    with Renewal() as r:
        s = r.s
        old = Client(s.port)
        old.login("alice", USERS[0][1], "stay")
        gen = r.generation()

        install_files(r.tls, os.path.join(r.b, "fullchain.pem"),
                      os.path.join(r.a, "privkey.pem"))
        res = s.ctl("reload")
        assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
        assert "tls.key" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert re.search(r"reload failed, keeping generation %d: .*tls\.key" % gen,
                         s.log_text()), s.log_text()[-2000:]
        assert r.generation() == gen
        assert served_certs(s) == {r.fp_a}
        ping(old, "p1")

        # The hook checks the pair before touching anything.
        bad = os.path.join(r.root, "live", "bad")
        os.makedirs(bad)
        shutil.copyfile(os.path.join(r.b, "fullchain.pem"),
                        os.path.join(bad, "fullchain.pem"))
        shutil.copyfile(os.path.join(r.a, "privkey.pem"),
                        os.path.join(bad, "privkey.pem"))
        install_files(r.tls, os.path.join(r.a, "fullchain.pem"),
                      os.path.join(r.a, "privkey.pem"))
        h = run_hook(s, bad, r.tls)
        assert h.returncode == 1, (h.returncode, h.stdout, h.stderr)
        assert "does not match" in h.stderr and "nothing installed" in h.stderr, h.stderr
        with open(os.path.join(r.tls, "cert.pem"), "rb") as f1, \
                open(os.path.join(r.a, "fullchain.pem"), "rb") as f2:
            assert f1.read() == f2.read()
        assert r.generation() == gen

        # A certificate path it cannot write: the key is not installed
        # alone either.
        h = run_hook(s, r.b, r.tls, env_extra={
            "XMPPD_CERT": os.path.join(r.root, "missing", "cert.pem")})
        assert h.returncode == 1, (h.returncode, h.stdout, h.stderr)
        assert "nothing installed" in h.stderr, h.stderr
        with open(os.path.join(r.tls, "key.pem"), "rb") as f1, \
                open(os.path.join(r.a, "privkey.pem"), "rb") as f2:
            assert f1.read() == f2.read()
        assert sorted(os.listdir(r.tls)) == ["cert.pem", "key.pem"], os.listdir(r.tls)
        assert r.generation() == gen

        # The key catches up: the next reload serves B.
        install_files(r.tls, os.path.join(r.b, "fullchain.pem"),
                      os.path.join(r.b, "privkey.pem"))
        res = s.ctl("reload")
        assert res.returncode == 0, res.stderr
        wait_for(lambda: workers_at(s, gen + 1), what="workers on the new generation")
        assert served_certs(s) == {r.fp_b}
        ping(old, "p2")
        old.close()

        # With xmppd not answering, the hook installs and says so.
        h = run_hook(s, r.a, r.tls, ctl="%s -s %s" % (
            XMPPCTL, os.path.join(r.root, "none.sock")))
        assert h.returncode == 0, h.stdout + h.stderr
        assert "not running" in h.stdout, h.stdout


def test_worker_keeps_context_on_mismatch():
    """The master checked a good pair, but by the time a worker loads
    the files the key no longer matches (the files changed in between):
    that worker logs why and keeps serving its previous certificate,
    the other serves the new one, and every handshake still succeeds.
    The worker is held with SIGSTOP across the change to make the
    interleaving certain."""
    with Renewal() as r:
        s = r.s
        slow = s.status()["workers"][1]
        gen = r.generation()
        os.kill(slow["pid"], signal.SIGSTOP)
        try:
            install_files(r.tls, os.path.join(r.b, "fullchain.pem"),
                          os.path.join(r.b, "privkey.pem"))
            res = s.ctl("reload")
            assert res.returncode == 0, res.stderr
            wait_for(lambda: s.status()["workers"][0]["generation"] == gen + 1,
                     what="worker 0 on the new generation")
            install_files(r.tls, os.path.join(r.b, "fullchain.pem"),
                          os.path.join(r.a, "privkey.pem"))
        finally:
            os.kill(slow["pid"], signal.SIGCONT)
        wait_for(lambda: workers_at(s, gen + 1), what="workers on the new generation")
        log = wait_for(lambda: re.search(
            r"w%d\b.*TLS certificate not reloaded, keeping the previous one: .*tls\.key.*"
            % slow["slot"], s.log_text()), what="the worker's error line")
        assert len(log.group(0).splitlines()) == 1
        assert served_certs(s) == {r.fp_a, r.fp_b}
        c = Client(s.port)
        c.login("alice", USERS[0][1], "after")
        ping(c, "p1")
        c.close()


def features(port):
    c = Client(port)
    try:
        return c.open()
    finally:
        c.close()


def test_reload_turns_tls_off_and_on():
    """tls.certificate is reloadable: emptied (with tls.required = no) new
    streams are offered no STARTTLS and the workers say so once, with no
    error line, while a stream already on TLS goes on; set again, STARTTLS
    is back with the certificate."""
    root = tempfile.mkdtemp(prefix="xmppd-test-certrenew-")
    try:
        a, fp_a = make_lineage(root, "a")
        with_tls = ("tls {\n  certificate = %s/fullchain.pem\n"
                    "  key = %s/privkey.pem\n}\n" % (a, a))
        server = Server(workers=2, users=USERS, config_text=with_tls,
                        overrides={"c2s.tls_port": "0"})
        del server.overrides["tls.certificate"], server.overrides["tls.key"]
        with server as s:
            assert "<starttls" in features(s.port)
            old = Client(s.port)
            old.login("alice", USERS[0][1], "tls")
            gen = s.status()["master"]["generation"]

            s.write_config('tls.certificate = ""\ntls.key = ""\n'
                           'tls.required = no\n')
            res = s.ctl("reload", check=True)
            assert "tls.certificate" in res.stdout, res.stdout
            wait_for(lambda: workers_at(s, gen + 1), what="new generation")
            assert "<starttls" not in features(s.port)
            plain = Client(s.port)
            plain.open()
            assert plain.auth_scram("bob", USERS[1][1]).startswith("<success")
            plain.open()
            plain.bind("plain")
            chat(plain, old, "alice@localhost/tls", "m1")
            chat(old, plain, "bob@localhost/plain", "m2")
            log = s.log_text()
            assert log.count("TLS off for new connections") == 2, log[-3000:]
            assert "TLS unavailable" not in log and "not reloaded" not in log, log[-3000:]

            s.write_config(with_tls)
            s.ctl("reload", check=True)
            wait_for(lambda: workers_at(s, gen + 2), what="new generation")
            assert {starttls_cert(s.port) for _ in range(NEW_CONNECTIONS)} == {fp_a}
            ping(old, "p1")
            for c in (old, plain):
                c.close()
            assert "TLS unavailable" not in s.log_text()
            assert "not reloaded" not in s.log_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_worker_without_certificate_fails_closed():
    """The certificate on disk is broken after the master checked it and a
    worker restarts then: that worker logs why and, tls.required being
    yes, lets nobody log in (no STARTTLS, no mechanisms, <auth/> gets
    encryption-required) instead of taking logins in cleartext; the
    other worker serves as before."""
    with Renewal() as r:
        s = r.s
        victim = s.status()["workers"][1]
        with open(os.path.join(r.tls, "cert.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ngarbage\n")
        os.kill(victim["pid"], signal.SIGKILL)

        def respawned():
            st = s.status_ok()
            return st and st["workers"][1]["pid"] != victim["pid"]
        wait_for(respawned, what="worker 1 respawned")
        wait_for(lambda: re.search(r"w%d\b.*TLS unavailable: .*tls\.certificate"
                                   % victim["slot"], s.log_text()),
                 what="the worker's error line")
        refused = served = 0
        for i in range(2 * NEW_CONNECTIONS):
            c = Client(s.port)
            feats = c.open()
            if "<starttls" in feats:
                served += 1
            else:
                refused += 1
                assert "<mechanisms" not in feats, feats
                c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                       "mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiY2Q=</auth>")
                c.read_until("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                             "<encryption-required/></failure>")
            c.close()
        assert refused > 0 and served > 0, (refused, served)


SHIM = """#!/bin/sh
# records the modes in the target directory around each call
snap() { for f in "$SHIM_DIR"/* "$SHIM_DIR"/.[!.]*; do
	[ -e "$f" ] && stat -c "%a %n" "$f"; done >> "$SHIM_LOG"; }
snap
"/bin/$(basename "$0")" "$@"
rc=$?
snap
exit $rc
"""


def test_hook_spaces_and_no_readable_key():
    """The hook with spaces in RENEWED_LINEAGE and in the installed
    paths, under umask 022: the key is installed 0640 and no file the
    hook makes next to it is ever readable by others (each cp, chown,
    chmod and mv is watched); xmppd not running is no failure."""
    root = tempfile.mkdtemp(prefix="xmppd-test-hook-")
    try:
        lineage, _ = make_lineage(root, "my cert")
        # a key readable by all in the lineage (as older certbot made
        # them): the hook's own umask must keep its copies private
        os.chmod(os.path.join(lineage, "privkey.pem"), 0o644)
        tls = os.path.join(root, "etc dir", "xmppd conf")
        os.makedirs(tls)
        shims = os.path.join(root, "shims")
        os.makedirs(shims)
        for cmd in ("cp", "chown", "chmod", "mv"):
            with open(os.path.join(shims, cmd), "w") as f:
                f.write(SHIM)
            os.chmod(os.path.join(shims, cmd), 0o755)
        log = os.path.join(root, "modes.log")
        open(log, "w").close()
        env = dict(os.environ, RENEWED_LINEAGE=lineage, RENEWED_DOMAINS="localhost",
                   XMPPD_CERT=os.path.join(tls, "cert.pem"),
                   XMPPD_KEY=os.path.join(tls, "key.pem"),
                   XMPPD_GROUP=grp.getgrgid(os.getgid()).gr_name,
                   XMPPCTL="%s -s %s" % (XMPPCTL, os.path.join(root, "none.sock")),
                   PATH=shims + ":" + os.environ["PATH"], SHIM_DIR=tls, SHIM_LOG=log)
        h = subprocess.run(["sh", HOOK], env=env, capture_output=True, text=True,
                           timeout=60, preexec_fn=lambda: os.umask(0o022))
        assert h.returncode == 0, h.stdout + h.stderr
        assert "not running" in h.stdout, h.stdout
        assert sorted(os.listdir(tls)) == ["cert.pem", "key.pem"], os.listdir(tls)
        for name, src, mode in (("key.pem", "privkey.pem", 0o640),
                                ("cert.pem", "fullchain.pem", 0o644)):
            with open(os.path.join(tls, name), "rb") as f1, \
                    open(os.path.join(lineage, src), "rb") as f2:
                assert f1.read() == f2.read(), name
            assert stat.S_IMODE(os.stat(os.path.join(tls, name)).st_mode) == mode, name
        seen = [l.split(" ", 1) for l in open(log).read().splitlines()]
        keys = [(m, n) for m, n in seen if "key" in os.path.basename(n)]
        assert keys, seen
        assert all(int(m, 8) & 0o007 == 0 for m, n in keys), keys
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_hook_renews_without_dropping,
               test_mismatched_key_keeps_old_certificate,
               test_worker_keeps_context_on_mismatch,
               test_reload_turns_tls_off_and_on,
               test_worker_without_certificate_fails_closed,
               test_hook_spaces_and_no_readable_key])
