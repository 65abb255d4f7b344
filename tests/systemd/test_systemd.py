"""shoal's Debian package under a real systemd.

Builds the package (dist/build-deb), installs it with apt-get into a copy
of a cached Debian 12 root file system (tests/systemd/rootfs.sh) before
boot (apt-get resolves the dependencies from Debian's lists; the cached
rootfs already holds them, so nothing is downloaded), then boots that copy
with systemd-nspawn --boot --private-network and drives it through nsenter
on the container's PID 1. Everything the tests send stays on the
container's own loopback: with --private-network it has no other link.

Run as root: SHOAL_TEST_SYSTEMD=1 sh tests/run.sh, or
/usr/bin/python3 -m pytest -q tests/systemd. SHOAL_DEB=FILE tests a
package built beforehand instead of building one.

The tests run in file order against one container: boot, reload, watchdog,
restart and upgrade under load, exposure, and purge last.
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ART = ROOT / "tests" / "artifacts" / "systemd"
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("systemd-nspawn") is None
    or shutil.which("debootstrap") is None,
    reason="needs root, systemd-nspawn (systemd-container) and debootstrap")

# What the tests configure after boot: two demo backends inside the
# container, a second frontend that only the reload brings, check = none
# so that a restarted shoal routes at once (the restart figures then
# measure the listening sockets alone), and the admin socket that
# `systemctl reload` goes through.
TEST_INI = """\
[global]
threads = 2
grace = 10s
log_level = info

[frontend web]
bind = 127.0.0.1:8080
backend = app

[frontend added]
bind = 127.0.0.1:8081
backend = app

[backend app]
balance = roundrobin
check = none
server = a 127.0.0.1:9001
server = b 127.0.0.1:9002

[stats]
bind = 127.0.0.1:1936

[admin]
"""


def run(cmd, timeout=120, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (
            " ".join(map(str, cmd)), r.returncode, r.stdout, r.stderr))
    return r


def wait_for(pred, timeout, what, step=0.2):
    """Poll pred() until it returns something true, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" %
                                 (timeout, what))
        time.sleep(step)


def file_list(root):
    """Every path in the container's tree that a package could leave
    behind: the volatile places (logs, caches, apt and dpkg state, the
    journal, tmpfs mounts) are left out."""
    skip = ("proc", "sys", "dev", "run", "tmp", "var/tmp", "var/log",
            "var/cache", "var/lib/apt", "var/lib/dpkg", "var/lib/systemd",
            "var/lib/dbus", "etc/machine-id", "etc/ld.so.cache",
            "etc/credstore", "root", "usr/local/bin/demo-backend.py",
            "usr/lib/python3")
    out = set()
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        rel = "" if rel == "." else rel
        dirs[:] = [x for x in dirs
                   if not any((os.path.join(rel, x) + "/").startswith(s + "/")
                              for s in skip)]
        for n in dirs + files:
            p = os.path.join(rel, n)
            if not any(p == s or p.startswith(s + "/") for s in skip) \
                    and "__pycache__" not in p:
                out.add(p)
    return out


def repack(deb, version, outdir):
    """The same package under a higher version: what an upgrade installs."""
    tree = Path(outdir) / "repack"
    run(["dpkg-deb", "-R", str(deb), str(tree)])
    ctl = tree / "DEBIAN" / "control"
    ctl.write_text(re.sub(r"(?m)^Version: .*$", "Version: " + version,
                          ctl.read_text()))
    out = Path(outdir) / ("shoal_%s_amd64.deb" % version)
    run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)])
    shutil.rmtree(tree)
    return out


class Container:
    """A booted copy of the rootfs. sh() runs a shell script inside it."""

    def __init__(self, root, log):
        self.root = Path(root)
        self.log = log
        self.proc = None
        self.pid1 = None
        self.mounted_nspawn_tmpfs = False

    def boot(self):
        # nspawn keeps per-container state under /run/systemd/nspawn,
        # which must be a tmpfs.
        nsd = "/run/systemd/nspawn"
        os.makedirs(nsd, exist_ok=True)
        if run(["findmnt", "-n", "-o", "FSTYPE", "-T", nsd],
               check=False).stdout.strip() != "tmpfs":
            run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", nsd])
            self.mounted_nspawn_tmpfs = True
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--private-network",
             "--register=no", "--keep-unit", "--console=read-only",
             "--machine", self.root.name, "-D", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.pid1 = wait_for(self._find_init, 30, "the container's init")
        # is-system-running --wait needs the manager's bus, which comes a
        # moment after init starts (before it, systemctl says "offline").
        wait_for(lambda: self.sh(
            "systemctl is-system-running --wait", timeout=90,
            check=False).stdout.strip() in ("running", "degraded"), 90,
            "the container's boot")

    def _find_init(self):
        assert self.proc.poll() is None, "systemd-nspawn exited"
        try:
            for t in os.listdir("/proc/%d/task" % self.proc.pid):
                kids = Path("/proc/%d/task/%s/children" %
                            (self.proc.pid, t)).read_text().split()
                for k in kids:
                    if Path("/proc/%s/comm" % k).read_text().strip() \
                            == "systemd":
                        return int(k)
        except OSError:
            pass
        return None

    def _cmd(self, script):
        return ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", PATH,
                "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
                "DEBIAN_FRONTEND=noninteractive", "/bin/sh", "-c", script]

    def sh(self, script, timeout=120, check=True):
        return run(self._cmd(script), timeout=timeout, check=check)

    def popen(self, script):
        return subprocess.Popen(self._cmd(script), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # nspawn turns SIGTERM into an orderly poweroff of the container.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.mounted_nspawn_tmpfs:
            run(["umount", "/run/systemd/nspawn"], check=False)


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    """The package under test and a newer version of it."""
    out = tmp_path_factory.mktemp("deb")
    if os.environ.get("SHOAL_DEB"):
        deb = Path(os.environ["SHOAL_DEB"]).resolve()
    else:
        t = time.monotonic()
        run(["sh", str(ROOT / "dist" / "build-deb"), str(out)], timeout=900)
        print("package built in %.1fs" % (time.monotonic() - t))
        deb = next(p for p in out.glob("shoal_*.deb"))
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
    newer = repack(deb, version + "+up1", out)
    return {"deb": deb, "version": version, "newer": newer,
            "newer_version": version + "+up1"}


@pytest.fixture(scope="module")
def ct(pkg):
    ART.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    rootfs = run(["sh", str(ROOT / "tests" / "systemd" / "rootfs.sh")],
                 timeout=1800).stdout.strip().splitlines()[-1]
    print("rootfs ready in %.1fs: %s" % (time.monotonic() - t, rootfs))
    t = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="shoal-systemd-", dir="/var/tmp"))
    root = work / ("shoal-test-%d" % os.getpid())
    log = open(ART / "console.log", "w")
    c = Container(root, log)
    try:
        run(["cp", "-a", "--reflink=auto", rootfs, str(root)], timeout=600)
        c.before = file_list(root)
        # /root/debs: the booted container mounts a tmpfs on /tmp.
        debs = root / "root" / "debs"
        debs.mkdir()
        shutil.copy(pkg["deb"], debs)
        shutil.copy(pkg["newer"], debs)
        shutil.copy(ROOT / "dist" / "demo-backend.py",
                    root / "usr" / "local" / "bin" / "demo-backend.py")
        # apt-get in a chroot, before boot: the booted container has no
        # network. The rootfs holds shoal's dependencies already.
        r = run(["chroot", str(root), "apt-get", "install", "-y", "-q",
                 "/root/debs/" + pkg["deb"].name],
                env={"PATH": PATH[5:], "DEBIAN_FRONTEND": "noninteractive"},
                timeout=300)
        (ART / "apt-install.log").write_text(r.stdout + r.stderr)
        c.boot()
        c.boot_s = time.monotonic() - t
        yield c
    finally:
        try:
            if c.pid1:
                r = c.sh("journalctl --no-pager -b", check=False, timeout=30)
                (ART / "journal.log").write_text(r.stdout)
        except Exception:
            pass
        c.stop()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main_pid(ct):
    return int(ct.sh("systemctl show -P MainPID shoal").stdout.strip())


def ab_inside(ct, n, c=20):
    """Start ab against the frontend inside the container."""
    return ct.popen("ab -q -r -s 10 -n %d -c %d http://127.0.0.1:8080/"
                    % (n, c))


def ab_result(p, timeout=300):
    out, _ = p.communicate(timeout=timeout)
    m = {k: int(v) for k, v in re.findall(
        r"(Complete requests|Failed requests|Non-2xx responses):\s+(\d+)",
        out)}
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    assert "Complete requests" in m, out
    m["rps"] = float(rps.group(1)) if rps else 0.0
    m["output"] = out
    return m


def test_active_after_boot(ct):
    assert ct.sh("systemctl is-active shoal").stdout.strip() == "active"
    # The packaged config is loopback only.
    assert "127.0.0.1:8080" in ct.sh("cat /etc/shoal/shoal.ini").stdout
    print("copy, install and boot until shoal is active: %.1fs" % ct.boot_s)


def test_status_line(ct):
    st = ct.sh("systemctl status --no-pager shoal", check=False).stdout
    m = re.search(r'Status: "([^"]*)"', st)
    assert m and "running" in m.group(1), st


def test_journal_has_shoal_lines(ct):
    j = ct.sh("journalctl --no-pager -u shoal -o cat").stdout
    assert "configuration is valid" in j     # ExecStartPre, shoal -t
    assert "frontend web listening on 127.0.0.1:8080" in j
    assert re.search(r"ready: \d+ workers", j), j


def test_reload_applies_config_before_returning(ct):
    for name, port in (("a", 9001), ("b", 9002)):
        ct.sh("systemd-run --unit=backend-%s --quiet "
              "/usr/bin/python3 /usr/local/bin/demo-backend.py %s %d"
              % (name, name, port))
    wait_for(lambda: ct.sh("curl -fsS http://127.0.0.1:9001/ && "
                           "curl -fsS http://127.0.0.1:9002/",
                           check=False).returncode == 0,
             20, "the demo backends")
    assert ct.sh("curl -sS -m 2 http://127.0.0.1:8081/",
                 check=False).returncode != 0
    ct.sh("cat > /etc/shoal/shoal.ini <<'EOF'\n%sEOF" % TEST_INI)
    pid = main_pid(ct)
    t = time.monotonic()
    ct.sh("systemctl reload shoal")
    took = time.monotonic() - t
    # No polling: when systemctl returns, the new frontend serves.
    r = ct.sh("curl -fsS -m 5 http://127.0.0.1:8081/")
    assert "hello from" in r.stdout
    info = ct.sh("shoalctl -s /run/shoal/admin.sock show info").stdout
    assert re.search(r"(?m)^reloads: 1$", info), info
    assert main_pid(ct) == pid
    # systemd logs "Reloaded" when it takes the reload as done: that must
    # come after shoal finished applying it (shoal's own timestamp).
    done = reloaded = None
    for line in ct.sh("journalctl --no-pager -u shoal -o json").stdout \
            .splitlines():
        e = json.loads(line)
        msg = e.get("MESSAGE")
        if not isinstance(msg, str):
            continue
        m = re.match(r"(\S+Z) info: reload done", msg)
        if m:
            done = datetime.datetime.strptime(
                m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        if msg.startswith("Reloaded shoal.service"):
            reloaded = int(e.get("_SOURCE_REALTIME_TIMESTAMP",
                                 e["__REALTIME_TIMESTAMP"])) / 1e6
    assert done is not None and reloaded is not None
    assert done <= reloaded, (done, reloaded)
    print("systemctl reload: %.3fs; shoal's 'reload done' %.1f ms before "
          "systemd's 'Reloaded'" % (took, (reloaded - done) * 1000))


def test_refused_reload_fails_and_keeps_serving(ct):
    ct.sh("cp /etc/shoal/shoal.ini /root/good.ini && "
          "printf 'bogus_key = 1\\n' >> /etc/shoal/shoal.ini")
    try:
        r = ct.sh("systemctl reload shoal", check=False)
        assert r.returncode != 0
        assert ct.sh("systemctl is-active shoal").stdout.strip() == "active"
        st = ct.sh("systemctl status --no-pager shoal", check=False).stdout
        assert "reload refused" in st and "bogus_key" in st, st
        r = ct.sh("curl -fsS -m 5 http://127.0.0.1:8081/")
        assert "hello from" in r.stdout
    finally:
        ct.sh("cp /root/good.ini /etc/shoal/shoal.ini")
    ct.sh("systemctl reload shoal")
    st = ct.sh("systemctl status --no-pager shoal", check=False).stdout
    assert "reload refused" not in st, st


def test_watchdog_restarts_stopped_shoal(ct):
    pid = main_pid(ct)
    restarts = int(ct.sh("systemctl show -P NRestarts shoal").stdout)
    t = time.monotonic()
    ct.sh("systemctl kill --kill-who=main --signal=SIGSTOP shoal")
    wait_for(lambda: main_pid(ct) not in (0, pid) and ct.sh(
        "systemctl is-active shoal", check=False).stdout.strip() == "active",
        120, "systemd to restart the stopped shoal")
    took = time.monotonic() - t
    assert int(ct.sh("systemctl show -P NRestarts shoal").stdout) \
        == restarts + 1
    j = ct.sh("journalctl --no-pager -u shoal -o cat").stdout
    assert "Watchdog timeout" in j, j[-2000:]
    wait_for(lambda: ct.sh("curl -fsS -m 2 http://127.0.0.1:8080/",
                           check=False).returncode == 0, 10, "shoal serving")
    print("SIGSTOP to serving again after the watchdog: %.1fs" % took)


def has_socket_unit(ct):
    return ct.sh("test -f /lib/systemd/system/shoal.socket",
                 check=False).returncode == 0


def test_restart_under_load_refuses_no_client(ct):
    if not has_socket_unit(ct):
        pytest.skip("the package has no shoal.socket (socket activation)")
    restarts = 5
    # systemd allows 5 starts in 10 s (StartLimitBurst): the watchdog's
    # restart counts too.
    ct.sh("systemctl reset-failed shoal")
    ab = ab_inside(ct, 20000)
    time.sleep(1)   # ab is under way before the first restart
    t = time.monotonic()
    for _ in range(restarts):
        ct.sh("systemctl restart shoal")
        time.sleep(0.5)
    took = time.monotonic() - t
    assert ab.poll() is None, "ab finished before the restarts did"
    m = ab_result(ab)
    print("ab -n 20000 -c 20 during %d restarts (%.1fs): %d complete, "
          "%d failed, %.0f req/s" % (restarts, took, m["Complete requests"],
                                     m["Failed requests"], m["rps"]))
    assert m["Complete requests"] == 20000, m["output"]
    assert m["Failed requests"] == 0, m["output"]
    assert m.get("Non-2xx responses", 0) == 0, m["output"]


def test_upgrade_under_load_refuses_no_client(ct, pkg):
    if not has_socket_unit(ct):
        pytest.skip("the package has no shoal.socket (socket activation)")
    pid = main_pid(ct)
    ab = ab_inside(ct, 20000)
    time.sleep(1)
    t = time.monotonic()
    ct.sh("systemctl reset-failed shoal")    # see the restart test
    r = ct.sh("apt-get install -y -q /root/debs/%s"
              % pkg["newer"].name, timeout=300)
    took = time.monotonic() - t
    assert ab.poll() is None, "ab finished before the upgrade did"
    m = ab_result(ab)
    print("ab -n 20000 -c 20 during apt-get install of %s (%.1fs): %d "
          "complete, %d failed, %.0f req/s" % (
              pkg["newer_version"], took, m["Complete requests"],
              m["Failed requests"], m["rps"]))
    v = ct.sh("dpkg-query -W -f '${Version}' shoal").stdout
    assert v == pkg["newer_version"], r.stdout
    assert main_pid(ct) != pid          # the new binary runs
    assert m["Complete requests"] == 20000, m["output"]
    assert m["Failed requests"] == 0, m["output"]


def test_exposure_score(ct):
    out = ct.sh("systemd-analyze security --no-pager shoal").stdout
    m = re.search(r"Overall exposure level for shoal.service: ([\d.]+)", out)
    assert m, out
    print("systemd-analyze security shoal: %s" % m.group(1))
    assert float(m.group(1)) <= 2.0, out


def test_purge_leaves_no_file(ct):
    ct.sh("systemctl stop backend-a backend-b", check=False)
    ct.sh("apt-get purge -y -q shoal", timeout=300)
    assert ct.sh("systemctl is-active shoal",
                 check=False).stdout.strip() != "active"
    left = sorted(file_list(ct.root) - ct.before)
    assert left == [], left
    r = ct.sh("find / -xdev -name '*shoal*' -not -path '/tmp/*' "
              "-not -path '/var/log/*' -not -path '/root/debs/*'",
              check=False)
    assert r.stdout.strip() == "", r.stdout
    r = ct.sh("ls /run/shoal /run/credentials/shoal.service 2>&1",
              check=False)
    assert r.returncode != 0, r.stdout
