"""What `make install` ships agrees with itself, and a daemon logs where
the installed files expect (issue 9, item 10).

- `make install DESTDIR=...` from the build tree: the init script, the
  systemd unit and the logrotate file name the binary, the configuration,
  the pid file and the log directory that the installed binary uses.
- The installed init script fails loudly (non-zero, one line saying
  what is missing) without the binary or without the configuration.
- Daemonized (no -f), xmppd writes nothing to the terminal that started
  it: its lines land in the log file, SIGUSR1 after a rename (logrotate)
  makes the master and the workers reopen it, and an empty log_file
  means the default log file named by `xmppd -h`, not stderr.  A start
  that fails after detaching still fails the command that started it,
  with the reason on its stderr.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILDDIR, SERVER_HEADER, XMPPD, Client, Server,  # noqa: E402
                     pid_alive, run_tests, stream_header, wait_for)


def make_install(dest):
    # Not through the parent make's jobserver: its descriptors are not
    # passed down to us.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    r = subprocess.run(["make", "-s", "-C", BUILDDIR, "install", "DESTDIR=" + dest],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "make install failed:\n" + r.stdout + r.stderr


def find_file(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    raise AssertionError("make install did not install %s" % name)


def shell_var(text, name):
    m = re.search(r"^%s=(\S+)$" % name, text, re.M)
    assert m, "no %s= line in the init script" % name
    return m.group(1)


def help_defaults(xmppd):
    """The configuration and daemon log file an xmppd binary defaults to."""
    r = subprocess.run([xmppd, "-h"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    conf = re.search(r"configuration \(default (\S+)\)", r.stdout)
    log = re.search(r"log_file means (\S+)", r.stdout)
    assert conf and log, r.stdout
    return conf.group(1), log.group(1)


def read(path):
    with open(path) as f:
        return f.read()


def test_installed_files_agree():
    dest = tempfile.mkdtemp(prefix="xmppd-test-install-")
    try:
        make_install(dest)
        init = read(find_file(dest, "xmppd.init"))
        unit = read(find_file(dest, "xmppd.service"))
        rotate = read(find_file(dest, "xmppd.logrotate"))
        daemon = shell_var(init, "DAEMON")
        conf = shell_var(init, "CONF")
        piddir = shell_var(init, "PIDDIR")
        logdir = shell_var(init, "LOGDIR")
        assert not re.search(r"@[a-z_]+@", init + unit + rotate), "unsubstituted @...@"

        # The binary is where the init script and the unit run it from,
        # and reads the file they name.
        installed = dest + daemon
        assert os.access(installed, os.X_OK), "%s not installed" % daemon
        want_conf, want_log = help_defaults(installed)
        assert conf == want_conf, (conf, want_conf)
        assert want_log == logdir + "/xmppd.log", (want_log, logdir)
        assert os.path.isdir(dest + logdir), "make install did not create " + logdir
        assert "ExecStart=%s -f -c %s\n" % (daemon, conf) in unit, unit
        assert "ExecStartPre=%s -t -c %s\n" % (daemon, conf) in unit, unit
        assert "ExecReload=%s -t -c %s\n" % (daemon, conf) in unit, unit
        assert "ReadWritePaths=-%s\n" % logdir in unit, unit

        # logrotate rotates the daemon's default file and signals the
        # pid file the init script makes the daemon write.
        assert re.search(r"^PIDFILE=\$PIDDIR/xmppd\.pid$", init, re.M), init
        assert re.search(r"^%s/\*\.log \{$" % re.escape(logdir), rotate, re.M), rotate
        assert 'kill -USR1 "$(cat %s/xmppd.pid)"' % piddir in rotate, rotate

        # The example configuration is the installed binary's own.
        example = read(find_file(dest, "xmppd.conf.example"))
        r = subprocess.run([installed, "--example"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == example

        # The manual pages go to man5/man8 and name the configuration
        # this binary reads; xmppd.conf(5) is the binary's own --man.
        pages = {}
        for name, section in (("xmppd.8", "man8"), ("xmppctl.8", "man8"),
                              ("xmppd.conf.5", "man5")):
            path = find_file(dest, name)
            assert os.path.basename(os.path.dirname(path)) == section, path
            pages[name] = read(path)
            assert not re.search(r"@[A-Za-z_]+@", pages[name]), name
            assert conf in pages[name], (name, conf)
        r = subprocess.run([installed, "--man"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0
        version = subprocess.run([installed, "--version"], capture_output=True,
                                 text=True, timeout=30).stdout.split()[1]
        docdir = os.path.dirname(os.path.dirname(
            find_file(dest, "xmppd.conf.example")))[len(dest):]
        want = (r.stdout.replace("@sysconfdir@", os.path.dirname(os.path.dirname(conf)))
                .replace("@docdir@", docdir).replace("@VERSION@", version))
        assert pages["xmppd.conf.5"] == want, "installed xmppd.conf.5 is not xmppd --man"

        # The certbot deploy hook is installed, executable, and runs the
        # installed xmppctl with the installed configuration's paths.
        hook = find_file(dest, "certbot-deploy-hook")
        assert os.access(hook, os.X_OK), hook
        text = read(hook)
        assert not re.search(r"@[a-z_]+@", text), "unsubstituted @...@ in hook"
        ctl = re.search(r"^XMPPCTL=\$\{XMPPCTL:-(\S+)\}$", text, re.M).group(1)
        assert os.access(dest + ctl, os.X_OK), ctl
        assert os.path.dirname(conf) + "/cert.pem}" in text, text

        # xmppctl without -c reads the file the daemon reads.
        ctlbin = find_file(dest, "xmppctl")
        if os.path.exists(conf):
            print("# %s exists on this machine: xmppctl default not run" % conf)
        else:
            r = subprocess.run([ctlbin, "status"], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 1, r
            assert r.stderr.startswith("xmppctl: %s does not exist (the installed "
                                       "default)" % conf), r.stderr

        # Without the binary: a non-zero exit and a line naming it.
        if os.path.exists(daemon):
            print("# %s exists on this machine: missing-binary case not run" % daemon)
        else:
            for action in ("start", "restart", "reload", "stop", "status"):
                r = subprocess.run(["sh", find_file(dest, "xmppd.init"), action],
                                   capture_output=True, text=True, timeout=30)
                assert r.returncode == 5, (action, r.returncode, r.stderr)
                assert daemon in r.stderr and "missing" in r.stderr, r.stderr
                assert r.stdout == ""

        # With the binary but without the configuration: the same.
        missing_conf = os.path.join(dest, "no", "xmppd.conf")
        script = os.path.join(dest, "xmppd.init.test")
        with open(script, "w") as f:
            f.write(init.replace("\nDAEMON=%s\n" % daemon, "\nDAEMON=%s\n" % installed)
                        .replace("\nCONF=%s\n" % conf, "\nCONF=%s\n" % missing_conf))
        for action in ("start", "restart", "reload"):
            r = subprocess.run(["sh", script, action], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 6, (action, r.returncode, r.stderr)
            assert missing_conf in r.stderr, r.stderr
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def hello(port):
    c = Client(port)
    c.send(stream_header("localhost"))
    c.read_until(SERVER_HEADER)
    c.close()


def stderr_text(s):
    with open(s.stderr_path, errors="replace") as f:
        return f.read()


def test_daemon_logs_to_file_and_reopens():
    s = Server(workers=1, foreground=False)
    try:
        s.start()
        assert s.proc.returncode == 0
        hello(s.port)
        wait_for(lambda: "connected" in s.log_text(), what="the worker's line")
        assert "started: 1 workers" in s.log_text()

        # logrotate: rename, then SIGUSR1; master and worker reopen.
        old = s.log + ".1"
        os.rename(s.log, old)
        os.kill(s.master_pid, signal.SIGUSR1)
        wait_for(lambda: all("%s info: log file %s reopened" % (role, s.log)
                             in s.log_text() for role in ("master", "w0")),
                 what="master and w0 reopen the log file")
        size = os.path.getsize(old)
        hello(s.port)
        wait_for(lambda: "connected" in s.log_text(), what="the worker's line in the new file")
        assert s.ctl("stop").returncode == 0
        wait_for(lambda: not pid_alive(s.master_pid), what="daemon exit")
        assert "master info: stopped" in s.log_text()
        assert os.path.getsize(old) == size, "lines went to the renamed file"
        # Nothing on the terminal that started it.
        assert stderr_text(s) == "", stderr_text(s)
    finally:
        s.stop()
    s.check_stderr()
    shutil.rmtree(s.dir, ignore_errors=True)


def test_daemon_empty_log_file_is_not_stderr():
    _, default_log = help_defaults(XMPPD)
    s = Server(workers=1, foreground=False, overrides={"log_file": ""})
    try:
        s.start(wait=False)
        rc = s.proc.wait(timeout=30)
        if rc == 0:     # stopped below, whatever happens
            s.master_pid = wait_for(s.read_pid_file, what="pid file")
        err = stderr_text(s)
        if not os.path.isdir(os.path.dirname(default_log)):
            # Cannot log where it should: it says so, here, and stops.
            assert rc == 1, (rc, err)
            lines = err.splitlines()
            assert len(lines) == 1 and "open(%s) failed" % default_log in lines[0], err
        else:
            assert rc == 0, err
            wait_for(lambda: "config %s" % s.config in read(default_log),
                     what="the start line in " + default_log)
            assert s.ctl("stop").returncode == 0
            wait_for(lambda: not pid_alive(s.master_pid), what="daemon exit")
            assert stderr_text(s) == "", stderr_text(s)
    finally:
        s.stop()
    s.check_stderr()
    shutil.rmtree(s.dir, ignore_errors=True)


def test_daemon_failed_start_is_reported():
    # The pid file is written after detaching: the process started from
    # the terminal (the init script's) must still fail, saying why.
    s = Server(workers=1, foreground=False)
    bad = os.path.join(s.dir, "no-such-dir", "xmppd.pid")
    s.overrides["pid_file"] = bad
    try:
        s.start(wait=False)
        rc = s.proc.wait(timeout=30)
        err = stderr_text(s)
        assert rc == 1, (rc, err)
        assert "fatal: open(%s) failed: No such file or directory" % bad in err, err
        assert err.count("\n") == 1, err
        assert "fatal: open(%s)" % bad in s.log_text(), s.log_text()
        assert "started" not in s.log_text()
    finally:
        s.stop()
    s.check_stderr()
    shutil.rmtree(s.dir, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_installed_files_agree, test_daemon_logs_to_file_and_reopens,
               test_daemon_empty_log_file_is_not_stderr,
               test_daemon_failed_start_is_reported])
