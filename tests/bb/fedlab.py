"""The federation lab: Prosody and ejabberd (Debian's packages) beside
xmppd on this one machine, each server for a domain of its own, on an
address of its own, found through a DNS server the lab starts, with
certificates from a CA made for the lab.

    from fedlab import Lab, ProsodyServer, EjabberdServer
    with Lab() as lab:
        p = ProsodyServer(lab, "prosody.test", users=[("alice", "pw")])
        e = EjabberdServer(lab, "ejabberd.test", users=[("bob", "pw")],
                           secure=False)
        x = lab.xmppd("xmppd.test", users=[("carol@xmppd.test", "pw")])
        lab.start()        # DNS, then every server, in order
        ...  p.addr, p.c2s_port, p.s2s_port, p.log_text(), x (harness.Server)

Addresses: every lab draws its own 127.A.B.0/24 (A from the pid, B at
random), each server (or address a test asks for: new_addr()) gets the
next of 127.A.B.10, .11, ...; the lab's DNS (LABDNS) is on 127.A.B.1
port 53; parallel labs do not collide.
Ports: each server's s2s listener is on a free port of its address; the
lab's DNS (tests/bb/dnslab.py, dnsmasq) has for every domain D
    _xmpp-server._tcp.D  SRV 0 0 PORT xmpp.D
    xmpp.D and D         A   ADDR
(a domain served by several nodes, lab.records(D, targets): one SRV
record per node, xmppK.D each, D naming them all) and nothing else:
every name under "test" without a record is NXDOMAIN,
nothing is forwarded, nothing reaches the real internet.

How each server is made to use that DNS without touching /etc:
  * Prosody 0.12: with lua-unbound installed (Debian's lua-unbound) its
    net.adns is net.unbound, which takes the `unbound` config table:
    resolvconf and hoststxt off, forward = "LABDNS@53", and the
    libunbound option local-zone "test. transparent" (unbound answers
    the RFC 6761 zone "test" NXDOMAIN itself by default).
  * ejabberd 23.01: SRV through Erlang's inet_res, configured by the
    inetrc file of its config directory (ejabberdctl exports ERL_INETRC):
    {nameserver, LABDNS, 53}, no resolv.conf, no hosts file; the SRV
    targets' addresses through getaddrinfo (glibc): ejabberd runs in a
    private mount namespace (unshare -m) with /etc/resolv.conf (LABDNS)
    and /etc/hosts (localhost) bind-mounted for it alone.
  * xmppd: the config row s2s.dns_servers.

Certificates (python3-cryptography): a CA per lab; lab.cert(domain,
kind) issues
    "full":  SAN dNSName=D, SRV-ID (id-on-dnsSRV) _xmpp-server.D,
             XmppAddr (id-on-xmppAddr) D            (RFC 6120 13.7.1.2)
    "srv":   SAN dNSName=D and SRV-ID only: the default for secure=True
    "dns":   SAN dNSName=D only
    "self":  self-signed for D (dNSName), which no one trusts: dialback
Why "srv" and not "full" by default: ejabberd 23.01 (Debian's, with
p1_xmpp 1.6.1) crashes its incoming s2s stream on any peer certificate
whose XmppAddr is a domain (xmpp_stream_pkix:get_domains_from_san
returns a binary where lists:flatmap wants a list: badarg in '++'); so
a certificate with XmppAddr is only shown to Prosody and xmppd.
ProsodyServer/EjabberdServer/lab.xmppd take secure=True (an "srv"
certificate from the CA, certificates required: EXTERNAL; cert_kind=
chooses another) or secure=False (a self-signed one, dialback allowed).
All of them trust the lab CA.

Prosody and ejabberd run as their own system users (setpriv, no su),
never as the system service, in directories under the lab's temp dir;
ejabberd's Erlang node has no epmd: its distribution listens on a free
port of 127.0.0.1.  Lab.stop() (the with block, or interpreter exit)
stops everything; every wait is bounded.  A failed test keeps the lab's
directory and prints the tails of the logs.
"""
import atexit
import datetime
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import free_port, pid_alive, wait_for  # noqa: E402
from dnslab import DnsLab  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID  # noqa: E402

ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7")

_LIVE = []


@atexit.register
def _stop_all():
    for lab in list(_LIVE):
        lab.stop()


def _der(tag, data):
    n = len(data)
    if n < 0x80:
        return bytes([tag, n]) + data
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + data


def _run(args, timeout=60, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (
            " ".join(args), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


def _tail(path, n=6000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def port_open(addr, port):
    import socket
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Lab:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="xmppd-fedlab-")
        os.chmod(self.dir, 0o755)       # prosody/ejabberd reach their dirs
        # 127.A.B.0/24 of this lab: A from the pid, B at random
        self.net = "127.%d.%d" % (16 + os.getpid() % 200,
                                  random.randint(1, 254))
        self.servers = []
        self._naddr = 0             # addresses new_addr() gave out
        # The DNS listens on port 53 of the lab's own .1 address (root:
        # the anchors need that for getaddrinfo, see EjabberdServer).
        self.dns_addr = "%s.1" % self.net
        self.dns = DnsLab(local=("test",), addr=self.dns_addr,
                          port=53 if os.geteuid() == 0 else None)
        self.started = False
        # extendedKeyUsage of the certificates cert() issues from now on:
        # a test may set [SERVER_AUTH] alone (what Let's Encrypt issues
        # since 2025) before making a server
        self.eku = [ExtendedKeyUsageOID.SERVER_AUTH,
                    ExtendedKeyUsageOID.CLIENT_AUTH]
        self._make_ca()
        _LIVE.append(self)

    # ---- addresses and DNS ------------------------------------------------

    def new_addr(self):
        """The next unused address of the lab's /24 (from .10 on): each
        server's, or each node of a cluster the test places itself
        (records())."""
        self._naddr += 1
        return "%s.%d" % (self.net, 9 + self._naddr)

    def add(self, server):
        """Called by each server's constructor: its DNS records."""
        if self.started:
            raise AssertionError("lab already started: DNS records are fixed")
        self.servers.append(server)
        d = server.domain
        self.dns.srv("_xmpp-server._tcp.%s" % d, "xmpp.%s" % d,
                     server.s2s_port, prio=0, weight=0)
        self.dns.host("xmpp.%s" % d, server.addr)
        self.dns.host(d, server.addr)

    def record(self, domain, addr, port):
        """The records of a domain with no server of the lab behind it
        (a server that is down, or a socket the test holds)."""
        self.records(domain, [(addr, port)])

    def records(self, domain, targets):
        """The records of a domain served from several places, targets
        [(addr, port), ...] (the nodes of a cluster, which the test
        starts itself): one _xmpp-server._tcp SRV record per target,
        all of priority 0 and weight 0 (RFC 2782: the client may pick
        any, and tries the next when one fails), target k (from 1)
        named xmppK.D with its A record, and D's A records naming every
        address.  One target keeps the single-server names (xmpp.D)."""
        if self.started:
            raise AssertionError("lab already started: DNS records are fixed")
        for k, (addr, port) in enumerate(targets):
            name = ("xmpp.%s" % domain if len(targets) == 1
                    else "xmpp%d.%s" % (k + 1, domain))
            self.dns.srv("_xmpp-server._tcp.%s" % domain, name, port,
                         prio=0, weight=0)
            self.dns.host(name, addr)
            self.dns.host(domain, addr)

    @property
    def dns_port(self):
        return self.dns.port

    # ---- certificates -----------------------------------------------------

    def _key(self):
        return ec.generate_private_key(ec.SECP256R1())

    def _write(self, name, cert, key):
        cp = os.path.join(self.dir, "pki", name + ".crt")
        kp = os.path.join(self.dir, "pki", name + ".key")
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.chmod(kp, 0o644)     # read by the prosody and ejabberd users
        return cp, kp

    def _make_ca(self):
        os.makedirs(os.path.join(self.dir, "pki"))
        self.ca_key = self._key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             "xmppd fedlab CA %s" % secrets.token_hex(4))])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False,
                                         True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                self.ca_key.public_key()), False)
            .sign(self.ca_key, hashes.SHA256()))
        self.ca_file, _ = self._write("ca", self.ca_cert, self.ca_key)
        os.chmod(os.path.join(self.dir, "pki", "ca.key"), 0o600)

    def cert(self, domain, kind="full", also=()):
        """(cert path, key path) for domain: kind "full", "srv", "dns" or "self"
        (see the module docstring); the names in `also` (a component's
        domain served by the same server) get the same identities."""
        key = self._key()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
        san = []
        for name in (domain,) + tuple(also):
            san.append(x509.DNSName(name))
            if kind in ("full", "srv"):
                san.append(x509.OtherName(ID_ON_DNSSRV, _der(
                    0x16, ("_xmpp-server." + name).encode("ascii"))))
            if kind == "full":
                san.append(x509.OtherName(ID_ON_XMPPADDR, _der(
                    0x0c, name.encode("utf-8"))))
        if kind not in ("full", "srv", "dns", "self"):
            raise ValueError(kind)
        if kind == "self":
            issuer, signer = subject, key
        else:
            issuer, signer = self.ca_cert.subject, self.ca_key
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=7))
             .add_extension(x509.SubjectAlternativeName(san), False)
             .add_extension(x509.ExtendedKeyUsage(list(self.eku)), False))
        if kind == "self":
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        else:
            b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                     self.ca_key.public_key()), False))
        cert = b.sign(signer, hashes.SHA256())
        return self._write("%s-%s-%s" % (domain, kind, secrets.token_hex(2)),
                           cert, key)

    # ---- xmppd ------------------------------------------------------------

    def xmppd(self, domain, secure=True, cert_kind=None, workers=1,
              users=(), overrides=None, **kw):
        """A harness.Server for domain with s2s on its own lab address,
        registered in the lab's DNS.  Started by lab.start() (or by the
        test).  s.addr, s.domain, s.s2s_port as for the anchors.
        components={domain: secret}: XEP-0114 components (harness.Server),
        their domains in the certificate and in the DNS as this xmppd."""
        return XmppdServer(self, domain, secure=secure, cert_kind=cert_kind,
                           workers=workers, users=users, overrides=overrides,
                           **kw)

    # ---- life -------------------------------------------------------------

    def start(self):
        self.dns.start()
        self.started = True
        for s in self.servers:
            s.start()
        return self

    def stop(self, failed=False):
        for s in reversed(self.servers):
            try:
                s.stop()
            except Exception as e:          # stop the others all the same
                print("fedlab: stopping %s: %s" % (s.domain, e))
        if failed:
            for s in self.servers:
                print("---- %s (%s) log tail ----" % (s.domain, s.kind))
                print(s.log_text()[-4000:])
            if self.dns.dir:
                print("---- dns queries ----")
                print("".join(self.dns.queries()[-40:]))
        self.dns.stop()
        if not failed:
            for s in self.servers:      # xmppd's harness directories
                if not s.dir.startswith(self.dir):
                    shutil.rmtree(s.dir, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)
        if not failed:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("fedlab: kept %s" % self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(failed=exc[0] is not None)
        return False


class _Anchor:
    kind = "?"
    system_user = None

    def __init__(self, lab, domain, addr=None, secure=True, cert_kind=None,
                 users=()):
        self.lab = lab
        self.domain = domain
        self.addr = addr or lab.new_addr()
        self.secure = secure
        self.users = list(users)          # (localpart, password)
        self.c2s_port = free_port()
        self.s2s_port = free_port()
        self.dir = os.path.join(lab.dir, "%s-%s" % (self.kind, domain))
        os.makedirs(self.dir)
        self.cert_file, self.key_file = lab.cert(
            domain, cert_kind or ("srv" if secure else "self"))
        self.proc = None
        lab.add(self)

    def jid(self, localpart):
        return "%s@%s" % (localpart, self.domain)

    def _spawn(self, args, env=None):
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.dir, env=env,
                                     start_new_session=True)
        out.close()

    def _as_user(self, args):
        if os.geteuid() != 0:
            return args
        u = self.system_user
        return ["setpriv", "--reuid", u, "--regid", u, "--init-groups",
                "env", "HOME=" + self.dir] + args

    def _chown(self):
        if os.geteuid() == 0:
            _run(["chown", "-R", "%s:" % self.system_user, self.dir])

    def _wait_listening(self, timeout):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("%s for %s exited (%s) while starting:\n%s"
                                     % (self.kind, self.domain,
                                        self.proc.returncode,
                                        self.log_text()[-3000:] +
                                        _tail(os.path.join(self.dir, "stdout.log"), 2000)))
            return (port_open(self.addr, self.c2s_port) and
                    port_open(self.addr, self.s2s_port))
        wait_for(up, timeout=timeout, step=0.1,
                 what="%s listening on %s" % (self.kind, self.addr))

    def log_text(self):
        return _tail(self.log, 10 ** 8)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


PROSODY_CONFIG = """\
-- written by tests/bb/fedlab.py
daemonize = false
run_as_root = false
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ debug = "{dir}/prosody.log" }}
interfaces = {{ "{addr}" }}
c2s_ports = {{ {c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_interfaces = {{ "{addr}" }}
s2s_ports = {{ {s2s_port} }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
admins = {{ }}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "offline"; "blocklist";
    "smacks"; -- XEP-0198, on s2s too (smacks_enabled_s2s defaults to true)
    {dialback}
    {extra}
}}
modules_disabled = {{ }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure_auth}
s2s_timeout = 30
allow_unencrypted_plain_auth = false
-- the lab's DNS (see fedlab.py): libunbound through lua-unbound
unbound = {{
    resolvconf = false;
    hoststxt = false;
    forward = "{dns_addr}@{dns_port}";
    options = {{ ["local-zone:"] = "test. transparent" }};
}}
certificates = "{dir}/certs"
ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{ca}" }}
VirtualHost "{domain}"
    ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{ca}" }}
"""


class ProsodyServer(_Anchor):
    """Prosody 0.12 for domain.  secure=True: a CA certificate and
    s2s_secure_auth (valid certificates required: EXTERNAL); False: a
    self-signed certificate, mod_dialback, s2s_secure_auth = false."""
    kind = "prosody"
    system_user = "prosody"

    def __init__(self, lab, domain, addr=None, secure=True, cert_kind=None,
                 users=(), modules=()):
        super().__init__(lab, domain, addr, secure, cert_kind, users)
        self.modules = tuple(modules)   # more modules_enabled ("pep")
        self.log = os.path.join(self.dir, "prosody.log")
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "certs"))

    def _write_config(self):
        with open(self.config, "w") as f:
            f.write(PROSODY_CONFIG.format(
                dir=self.dir, addr=self.addr, c2s_port=self.c2s_port,
                s2s_port=self.s2s_port, domain=self.domain,
                dialback='"dialback";' if not self.secure else "",
                extra="".join('"%s"; ' % m for m in self.modules),
                secure_auth="true" if self.secure else "false",
                dns_addr=self.lab.dns_addr, dns_port=self.lab.dns_port,
                cert=self.cert_file,
                key=self.key_file, ca=self.lab.ca_file))

    def prosodyctl(self, *args):
        return _run(self._as_user(["prosodyctl", "--config", self.config]
                                  + list(args)), timeout=60)

    def start(self):
        self._write_config()
        self._chown()
        for user, password in self.users:
            self.prosodyctl("register", user, self.domain, password)
        self._spawn(self._as_user(["prosody", "-F", "--config", self.config]))
        self._wait_listening(30)
        return self


EJABBERD_YML = """\
# written by tests/bb/fedlab.py
hosts:
  - "{domain}"
loglevel: debug
log_rotate_count: 0
certfiles:
  - "{cert}"
  - "{key}"
ca_file: "{ca}"
s2s_cafile: "{ca}"
s2s_use_starttls: required
s2s_dns_timeout: 5
s2s_dns_retries: 1
outgoing_s2s_families:
  - ipv4
s2s_timeout: 30
negotiation_timeout: 30
default_db: mnesia
auth_method: internal
auth_password_format: scram
listen:
  -
    port: {c2s_port}
    ip: "{addr}"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: {s2s_port}
    ip: "{addr}"
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
s2s_access: s2s
shaper: {{}}
shaper_rules: {{}}
modules:
  mod_disco: {{}}
  mod_roster: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_blocking: {{}}
  mod_privacy: {{}}
{dialback}
{extra}
"""

EJABBERDCTL_CFG = """\
# written by tests/bb/fedlab.py: a private node, no epmd
ERLANG_NODE={node}
ERL_DIST_PORT={dist_port}
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie {cookie}"
EJABBERD_PID_PATH={dir}/ejabberd.pid
CONTRIB_MODULES_PATH={dir}/contrib
CONTRIB_MODULES_CONF_DIR={dir}/contrib
"""

# Erlang's resolver configuration (ERL_INETRC): the lab's DNS only.
EJABBERD_INETRC = """\
{{lookup, [file, dns]}}.
{{host, {{127,0,0,1}}, ["localhost"]}}.
{{resolv_conf, ""}}.
{{hosts_file, ""}}.
{{nameserver, {{{dns_tuple}}}, {dns_port}}}.
{{timeout, 2000}}.
{{retry, 2}}.
"""


class EjabberdServer(_Anchor):
    """ejabberd 23.01 for domain.  secure=True: a CA certificate, no
    mod_s2s_dialback (valid certificates required: EXTERNAL); False: a
    self-signed certificate and mod_s2s_dialback."""
    kind = "ejabberd"
    system_user = "ejabberd"

    def __init__(self, lab, domain, addr=None, secure=True, cert_kind=None,
                 users=(), modules=""):
        super().__init__(lab, domain, addr, secure, cert_kind, users)
        self.modules = modules      # more lines under modules: (YAML)
        self.node = "fedlab%s@localhost" % secrets.token_hex(4)
        self.dist_port = free_port()
        self.cookie = secrets.token_hex(16)
        self.log = os.path.join(self.dir, "logs", "ejabberd.log")
        for sub in ("logs", "spool", "contrib"):
            os.makedirs(os.path.join(self.dir, sub))

    def _write_config(self):
        with open(os.path.join(self.dir, "ejabberd.yml"), "w") as f:
            f.write(EJABBERD_YML.format(
                domain=self.domain, cert=self.cert_file, key=self.key_file,
                ca=self.lab.ca_file, addr=self.addr, c2s_port=self.c2s_port,
                s2s_port=self.s2s_port,
                dialback="" if self.secure else "  mod_s2s_dialback: {}",
                extra=self.modules))
        p = os.path.join(self.dir, "ejabberdctl.cfg")
        with open(p, "w") as f:
            f.write(EJABBERDCTL_CFG.format(node=self.node, dir=self.dir,
                                           dist_port=self.dist_port,
                                           cookie=self.cookie))
        os.chmod(p, 0o600)
        with open(os.path.join(self.dir, "inetrc"), "w") as f:
            f.write(EJABBERD_INETRC.format(
                dns_tuple=self.lab.dns_addr.replace(".", ","),
                dns_port=self.lab.dns_port))

    def ctl_args(self):
        return ["ejabberdctl", "--config-dir", self.dir, "--ctl-config",
                os.path.join(self.dir, "ejabberdctl.cfg"), "--logs",
                os.path.join(self.dir, "logs"), "--spool",
                os.path.join(self.dir, "spool")]

    def ctl(self, *args, check=True, timeout=60):
        return _run(self._as_user(self.ctl_args() + list(args)),
                    timeout=timeout, check=check, cwd=self.dir)

    def _in_lab_netconf(self, args):
        """args in a private mount namespace where /etc/resolv.conf
        names the lab's DNS and /etc/hosts has localhost only: ejabberd
        resolves SRV records with Erlang's inet_res (the inetrc) but the
        addresses of the SRV targets with getaddrinfo (xmpp_stream_out:
        a_lookup calls net:getaddrinfo), i.e. glibc, which reads
        /etc/resolv.conf (no port there: the lab's DNS is on port 53 of
        its own address).  The machine's /etc is not touched."""
        rc = os.path.join(self.dir, "resolv.conf")
        hosts = os.path.join(self.dir, "hosts")
        with open(rc, "w") as f:
            f.write("nameserver %s\noptions timeout:2 attempts:1\n"
                    % self.lab.dns_addr)
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n")
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && '
                'mount --bind "$1" /etc/hosts && shift && exec "$@"',
                rc, hosts] + args

    def start(self):
        self._write_config()
        self._chown()
        self._spawn(self._in_lab_netconf(
            self._as_user(self.ctl_args() + ["foreground"])))
        self._wait_listening(120)
        # listeners open before the node has finished starting
        wait_for(lambda: self.ctl("status", check=False).returncode == 0,
                 timeout=60, step=0.5, what="ejabberd started")
        for user, password in self.users:
            self.ctl("register", user, self.domain, password)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # a clean stop of the node (mnesia), then whatever is left
            self.ctl("stop", check=False, timeout=30)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        super().stop()


class XmppdServer(harness.Server):
    """xmppd for one lab domain: harness.Server with s2s on the lab
    address and port its DNS records name, the lab's DNS and CA."""
    kind = "xmppd"

    def __init__(self, lab, domain, secure=True, cert_kind=None, workers=1,
                 users=(), overrides=None, addr=None, components=None, **kw):
        self.lab = lab
        self.domain = domain
        self.secure = secure
        self.addr = addr or lab.new_addr()
        s2s_port = free_port()
        # components={domain: secret} (XEP-0114, harness.Server): the
        # certificate covers their domains too, and the lab's DNS sends
        # the other servers to this xmppd's s2s port for them
        self.cert_file, self.key_file = lab.cert(
            domain, cert_kind or ("srv" if secure else "self"),
            also=tuple(components or ()))
        o = {
            "hosts": domain,
            "c2s.addresses": self.addr,
            "tls.certificate": self.cert_file,
            "tls.key": self.key_file,
            "s2s.addresses": self.addr,
            "s2s.port": str(s2s_port),
            "s2s.tls_port": "0",
            "s2s.ca_file": lab.ca_file,
            "s2s.auth": "pkix" if secure else "dialback",
            # filled in at start(): the DNS port is known then
            "s2s.dns_servers": "",
        }
        o.update(overrides or {})
        super().__init__(workers=workers, overrides=o, users=users,
                         components=components, **kw)
        self.s2s_port = s2s_port        # harness.Server set its own
        self.c2s_port = self.port
        lab.add(self)
        for d in components or ():
            lab.record(d, self.addr, s2s_port)

    def jid(self, localpart):
        return "%s@%s" % (localpart, self.domain)

    def start(self, wait=True):
        if not self.overrides.get("s2s.dns_servers"):
            self.overrides["s2s.dns_servers"] = self.lab.dns.server
        return super().start(wait)

    def stop(self):
        super().stop()
        self.check_stderr()


# ---- clients: slixmpp (python3-slixmpp) --------------------------------------

import asyncio  # noqa: E402
import logging  # noqa: E402
import ssl  # noqa: E402

import slixmpp  # noqa: E402

logging.basicConfig(level=logging.DEBUG if os.environ.get(
    "XMPPD_TEST_CLIENT_DEBUG") else logging.CRITICAL)


class User(slixmpp.ClientXMPP):
    """A slixmpp client of one lab server that records what its user
    sees: presences (subscription requests and answers, availability),
    roster pushes, messages.  Nothing is automatic: subscription requests
    are neither accepted nor returned unless the test does it."""

    def __init__(self, server, localpart, password, resource="lab",
                 domain=None):
        super().__init__("%s@%s/%s" % (localpart, domain or server.domain,
                                       resource), password)
        self.home = server
        # The server's certificate (c2s and s2s are the same) comes from
        # the lab CA or is self-signed: trust both, check the name (not
        # for a user of another of the server's hosts: domain, whose
        # name the certificate does not carry).
        self.ssl_context = ssl.create_default_context(cafile=server.lab.ca_file)
        self.ssl_context.load_verify_locations(server.cert_file)
        if domain is not None and domain != server.domain:
            self.ssl_context.check_hostname = False
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.inbox = asyncio.Queue()
        self.presences = []          # every <presence/> received, in order
        self.changed = asyncio.Event()
        self.session = asyncio.Event()
        self.add_event_handler("session_start", self._on_session)
        self.add_event_handler("message", self.inbox.put_nowait)
        self.add_event_handler("presence", self._on_presence)
        self.add_event_handler("roster_update", lambda _: self.changed.set())

    def _on_session(self, _):
        self.session.set()

    def _on_presence(self, p):
        self.presences.append(p)
        self.changed.set()

    async def online(self, timeout=20):
        self.connect(address=(self.home.addr, self.home.c2s_port))
        await asyncio.wait_for(self.session.wait(), timeout)
        await self.get_roster()
        self.send_presence()
        return self

    async def offline(self):
        self.disconnect()
        try:
            await asyncio.wait_for(self.disconnected, 5)
        except (asyncio.TimeoutError, TypeError):
            pass

    async def until(self, pred, timeout, what):
        """Wait (bounded) until pred() is true, re-checked on every
        presence and roster push."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self.changed.clear()
            v = pred()
            if v:
                return v
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError("%s: timed out after %ss waiting for %s"
                                     % (self.boundjid.bare, timeout, what))
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    def presence_from(self, bare, ptype):
        return [p for p in self.presences
                if p["from"].bare == bare and p["type"] == ptype]

    def subscription(self, bare):
        """The roster item's subscription as the server pushed it."""
        r = self.client_roster
        return r[bare]["subscription"] if bare in r else None

    async def server_roster(self):
        """The roster fetched from the server now: {bare: (subscription,
        ask)}."""
        iq = self.Iq(stype="get")
        iq.enable("roster")
        res = await iq.send(timeout=10)
        return {j: (item["subscription"], item["ask"])
                for j, item in res["roster"]["items"].items()}

    async def next_message(self, timeout):
        return await asyncio.wait_for(self.inbox.get(), timeout)


async def befriend(a, b, timeout=30):
    """RFC 6121 3.1 both ways, as two users do it: a asks, b approves and
    asks back, a approves.  Checks on the way what each user sees: the
    request arrives from the other's bare JID, the roster pushes end
    at subscription 'both' on both sides, each sees the other online."""
    A, B = a.boundjid.bare, b.boundjid.bare
    a.send_presence(pto=B, ptype="subscribe")
    await a.until(lambda: a.client_roster[B]["pending_out"] if B in a.client_roster else False,
                  timeout, "roster push: %s pending out" % B)
    await b.until(lambda: b.presence_from(A, "subscribe"), timeout,
                  "<presence type='subscribe'/> from %s" % A)
    b.send_presence(pto=A, ptype="subscribed")
    b.send_presence(pto=A, ptype="subscribe")
    await a.until(lambda: a.presence_from(B, "subscribed"), timeout,
                  "<presence type='subscribed'/> from %s" % B)
    await a.until(lambda: a.presence_from(B, "subscribe"), timeout,
                  "<presence type='subscribe'/> from %s" % B)
    a.send_presence(pto=B, ptype="subscribed")
    await a.until(lambda: a.subscription(B) == "both", timeout,
                  "roster push: %s subscription both" % B)
    await b.until(lambda: b.subscription(A) == "both", timeout,
                  "roster push: %s subscription both" % A)
    # each now sees the other available (the servers' probes / the
    # presence sent after the approval)
    await a.until(lambda: a.presence_from(B, "available"), timeout,
                  "available presence of %s" % B)
    await b.until(lambda: b.presence_from(A, "available"), timeout,
                  "available presence of %s" % A)
    for u, other in ((a, B), (b, A)):
        roster = await u.server_roster()
        if roster.get(other, (None, None))[0] != "both":
            raise AssertionError("%s's roster on its server: %r (want %s both)"
                                 % (u.boundjid.bare, roster, other))


async def converse(a, b, text, timeout=30):
    """a says text to b, then b answers; each message arrives once, from
    the sender's full JID, with the body exactly as sent."""
    for s, r, body in ((a, b, text), (b, a, "re: " + text)):
        s.send_message(mto=r.boundjid.bare, mbody=body, mtype="chat")
        m = await r.next_message(timeout)
        if m["from"] != s.boundjid or m["body"] != body or m["type"] != "chat":
            raise AssertionError("%s got %s, want a chat from %s: %r" % (
                r.boundjid.bare, m, s.boundjid, body))


def run_async(coro, timeout=120):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())
