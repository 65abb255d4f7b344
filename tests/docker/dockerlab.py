"""A private Docker daemon for the lab test, and the helpers around it.

Debian's dockerd runs with vfs storage and without iptables, on its own
socket, data root and exec root in a temporary directory, so it shares
nothing with any other daemon on the machine. Two placements:

- in the host's network namespace, to build images (``--network host``
  lets apt-get and npm reach their registries); no bridge is created
  there, so no lab address ever exists in the host namespace;
- inside a private network namespace this module creates, to run the
  stack: the lab network 192.168.42.0/24, its bridge and the published
  ports exist only in there, and every client (curl, ab, chromium) runs
  in there too (``in_ns``).

The namespace is entered with ``nsenter --net`` rather than ``ip netns
exec``: the latter remounts /sys, which hides the cgroup mounts dockerd
needs. Everything started is stopped and removed by ``stop()``, which
the test's fixtures call on every exit path.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"          # Debian's docker.io client
COMPOSE = "/usr/bin/docker-compose"  # Debian's docker-compose 1.29


def wait_for(pred, timeout, what, step=0.2):
    """Poll pred() until it returns a true value; fail after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                         f"(last: {last!r})")


class Netns:
    """A private network namespace with only lo, removed by close()."""

    def __init__(self, name):
        self.name = name
        self.path = f"/run/netns/{name}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"],
                       check=True)

    def cmd(self, argv):
        """argv prefixed to run in this namespace (network only)."""
        return ["nsenter", f"--net={self.path}", "--"] + list(argv)

    def close(self):
        subprocess.run(["ip", "netns", "delete", self.name],
                       stderr=subprocess.DEVNULL)


class Dockerd:
    """One dockerd with its own socket, data root and exec root."""

    def __init__(self, root, log_name):
        self.root = root
        self.sock = os.path.join(root, "docker.sock")
        self.log_path = os.path.join(root, log_name)
        self.proc = None
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")

    def start(self, netns=None, timeout=60):
        os.makedirs(os.path.join(self.root, "data"), exist_ok=True)
        argv = [DOCKERD,
                "--storage-driver=vfs", "--iptables=false",
                "--ip-masq=false",
                "-H", f"unix://{self.sock}",
                "--data-root", os.path.join(self.root, "data"),
                "--exec-root", os.path.join(self.root, "exec"),
                "--pidfile", os.path.join(self.root, "docker.pid"),
                "--log-level", "warn"]
        if netns is None:
            # Host namespace: builds only. No bridge, no forwarding change.
            argv += ["--bridge=none", "--ip-forward=false"]
        else:
            argv = netns.cmd(argv)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("dockerd exited: " + self.log_tail())
            return self.docker("version", check=False,
                               capture=True).returncode == 0
        wait_for(up, timeout, "dockerd to answer", step=0.3)

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def docker(self, *args, check=True, capture=False, timeout=900,
               cwd=None, env=None):
        return subprocess.run([DOCKER] + list(args), env=env or self.env,
                              check=check, timeout=timeout, cwd=cwd,
                              capture_output=capture, text=True)

    def out(self, *args, **kw):
        return self.docker(*args, capture=True, **kw).stdout.strip()

    def stop(self):
        """Stop the daemon, its containerd and every shim it started."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.docker("ps", "-aq", check=False, capture=True,
                            timeout=10)
                ids = self.out("ps", "-aq", check=False, timeout=10).split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, capture=True,
                                timeout=60)
            except subprocess.TimeoutExpired:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # containerd and its shims outlive a killed dockerd: find them by
        # our own root in their command line, and only those.
        for pid in own_processes(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None


def own_processes(root):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if root in cmd:
            pids.append(int(d))
    return pids


def unmount_under(root):
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for p in sorted((p for p in points if p.startswith(root)),
                    key=len, reverse=True):
        subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)


def make_root():
    """The daemons' directory: a new temporary one, or $SHOAL_DOCKER_KEEP
    (kept between runs, so images and the build cache survive: for
    working on the images, not for CI)."""
    keep = os.environ.get("SHOAL_DOCKER_KEEP")
    if keep:
        os.makedirs(keep, exist_ok=True)
        return os.path.abspath(keep)
    base = os.environ.get("SHOAL_DOCKER_TMP", "/var/tmp")
    return tempfile.mkdtemp(prefix="shoal-docker-", dir=base)


def remove_root(root):
    unmount_under(root)
    if not os.environ.get("SHOAL_DOCKER_KEEP"):
        shutil.rmtree(root, ignore_errors=True)


def lab_routes_in_host_ns():
    """Routes or addresses of 192.168.42.0/24 in this (the host) namespace."""
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"],
                         capture_output=True, text=True).stdout
    addrs = subprocess.run(["ip", "-4", "-o", "addr"],
                           capture_output=True, text=True).stdout
    return [l for l in (out + addrs).splitlines() if "192.168.42." in l]
