"""Prosody (Debian's prosody 0.12) on free loopback ports, with the
same face as harness.Server where the client tests need it: port,
tls_port, log_text(), start/stop, 'with'.

A development aid and a reference: tests/bb/test_clients_mobile.py runs
its client code against Prosody with XMPPD_TEST_AGAINST=prosody, to
tell a mistake in the test from a bug in xmppd.  The committed tests
run against xmppd; nothing here is needed by them.
"""
import os
import shutil
import signal
import subprocess
import tempfile

from harness import free_port, pid_alive, test_certificate, wait_for

CONFIG = """\
daemonize = false
run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ {tls_port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
admins = {{ }}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "vcard4"; "private";
    "blocklist"; "offline"; "carbons"; "mam"; "smacks"; "csi_simple";
    "mam_on_host";
}}
plugin_paths = {{ "{dir}/plugins" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
archive_expires_after = "never"
default_archive_policy = true
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
smacks_hibernation_time = {sm_max}
log = {{ debug = "{dir}/prosody.log" }}
certificates = "{dir}/certs"
ssl = {{ certificate = "{cert}"; key = "{key}" }}
VirtualHost "localhost"
    ssl = {{ certificate = "{cert}"; key = "{key}" }}
"""


class Prosody:
    def __init__(self, users=(), workers=1, sm_max=300, **_ignored):
        self.dir = tempfile.mkdtemp(prefix="prosody-test-")
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "certs"))
        # Prosody lists urn:xmpp:mam:2 on the account only; profanity
        # looks for it on the server (see BUGS-11.md): say it there too.
        os.makedirs(os.path.join(self.dir, "plugins"))
        with open(os.path.join(self.dir, "plugins", "mod_mam_on_host.lua"), "w") as f:
            f.write('module:add_feature("urn:xmpp:mam:2");\n')
        cert, key = test_certificate()
        self.port = free_port()
        self.tls_port = free_port()
        self.workers = 1
        self.users = list(users)
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        self.log = os.path.join(self.dir, "prosody.log")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(dir=self.dir, port=self.port,
                                  tls_port=self.tls_port, cert=cert, key=key,
                                  sm_max=sm_max))
        self.proc = None

    def prosodyctl(self, *args):
        r = subprocess.run(["prosodyctl", "--config", self.config] + list(args),
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError("prosodyctl %s: %s %s" % (args, r.stdout, r.stderr))

    def start(self):
        for jid, password in self.users:
            user, host = jid.split("@")
            self.prosodyctl("register", user, host, password)
        self.stderr = open(os.path.join(self.dir, "prosody.stderr"), "ab")
        self.proc = subprocess.Popen(["prosody", "-F", "--config", self.config],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=subprocess.STDOUT)
        wait_for(lambda: "Activated service 'c2s'" in self.log_text()
                 or self.proc.poll() is not None, what="prosody up")
        if self.proc.poll() is not None:
            raise AssertionError("prosody exited: %s" % self.log_text()[-3000:])
        return self

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def status(self):
        return None

    def stop(self):
        if self.proc is not None and pid_alive(self.proc.pid):
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            print("---- prosody log (%s) ----" % self.log)
            print(self.log_text()[-6000:])
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
