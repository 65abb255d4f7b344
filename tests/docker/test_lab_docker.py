"""The lab stack on a real Docker daemon (run with SHOAL_TEST_DOCKER=1).

Builds dist/lab/ha and dist/lab/webapp from a debootstrapped Debian 12
base with a private dockerd in the host namespace (nothing but builds
there), then runs dist/lab/compose.yaml with a second private dockerd
inside a network namespace made for the test, and drives it the way the
lab does: scale 3 -> 5, `docker kill` a node under a client loop, `docker
stop` one under `ab -c 20`, drain one through the admin port 9999, and a
screenshot of the stats page. Every client runs in that namespace; the
host namespace never gets a route to 192.168.42.0/24 (checked).

Timings go to tests/artifacts/lab-docker-timings.json.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

import dockerlab
from dockerlab import wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB = os.path.join(ROOT, "dist", "lab")
ART = os.path.join(ROOT, "tests", "artifacts")
HERE = os.path.dirname(os.path.abspath(__file__))
HA = "192.168.42.42"
PROJECT = f"shoallab{os.getpid()}"

pytestmark = pytest.mark.skipif(os.environ.get("SHOAL_TEST_DOCKER") != "1",
                                reason="set SHOAL_TEST_DOCKER=1")

timings = {}


def note(key, value):
    timings[key] = round(value, 2) if isinstance(value, float) else value
    os.makedirs(ART, exist_ok=True)
    with open(os.path.join(ART, "lab-docker-timings.json"), "w") as f:
        json.dump(timings, f, indent=1, sort_keys=True)


class Lab:
    def __init__(self, root):
        self.root = root
        self.ns = None
        self.dk = None

    # --- clients, all inside the namespace
    def ns_run(self, argv, timeout=120, check=True, env=None):
        return subprocess.run(self.ns.cmd(argv), capture_output=True,
                              text=True, timeout=timeout, check=check,
                              env=env)

    def stats(self):
        r = self.ns_run(["curl", "-sf", "--max-time", "3",
                         f"http://{HA}:1936/stats.json"], check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def announced(self):
        """{address: server} for every announced server, or {} if none."""
        st = self.stats()
        if not st:
            return {}
        return {s["address"]: s for b in st["backends"] for s in b["servers"]
                if s["source"] == "announced"}

    def up_addresses(self):
        return {a for a, s in self.announced().items() if s["state"] == "up"}

    def get(self, path="/"):
        r = self.ns_run(["curl", "-s", "-i", "--max-time", "5",
                         f"http://{HA}{path}"], check=False)
        return r.stdout

    def admin(self, line):
        """One admin command over TCP 9999, from inside the namespace."""
        code = ("import socket,sys\n"
                "s=socket.create_connection(('127.0.0.1',9999),5)\n"
                "s.sendall(sys.argv[1].encode()+b'\\n')\n"
                "d=b''\n"
                "while not d.endswith(b'\\n\\n'):\n"
                "    c=s.recv(4096)\n"
                "    if not c: break\n"
                "    d+=c\n"
                "print(d.decode())\n")
        return self.ns_run(["python3", "-c", code, line]).stdout

    # --- the stack
    def compose(self, *args, timeout=600):
        return subprocess.run([dockerlab.COMPOSE, "-p", PROJECT,
                               "-f", os.path.join(LAB, "compose.yaml")]
                              + list(args), env=self.dk.env, cwd=LAB,
                              capture_output=True, text=True,
                              timeout=timeout, check=True)

    def webapp_containers(self):
        out = self.dk.out("ps", "-q", "--filter",
                          f"label=com.docker.compose.project={PROJECT}",
                          "--filter", "label=com.docker.compose.service=webapp")
        return out.split()

    def ip_of(self, cid):
        return self.dk.out("inspect", "-f",
                           "{{range .NetworkSettings.Networks}}"
                           "{{.IPAddress}}{{end}}", cid)


def keep_logs(lab):
    os.makedirs(ART, exist_ok=True)
    for name in ("build.log", "run.log"):
        p = os.path.join(lab.root, name)
        if os.path.exists(p):
            shutil.copy(p, os.path.join(ART, "lab-dockerd-" + name))


def build_images(dk):
    t0 = time.monotonic()
    subprocess.run(["sh", os.path.join(HERE, "base-image.sh"), "debian:12"],
                   env=dk.env, check=True, timeout=900)
    note("base_image_s", time.monotonic() - t0)
    # npm reaches its registry over TLS: if this host trusts local CAs
    # (Debian's place for them), so does the build.
    extra = "".join(open(p).read() for p in
                    sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")))
    for name in ("ha", "webapp"):
        t = time.monotonic()
        args = ["--build-arg", f"EXTRA_CA_CERTS={extra}"] \
            if extra and name == "webapp" else []
        log = os.path.join(ART, f"lab-build-{name}.log")
        with open(log, "w") as f:
            r = subprocess.run([dockerlab.DOCKER, "build", "--network", "host",
                                "-f", f"dist/lab/{name}/Dockerfile",
                                "-t", f"shoal-lab/{name}"] + args + ["."],
                               cwd=ROOT, env=dk.env, stdout=f,
                               stderr=subprocess.STDOUT, timeout=1800)
        assert r.returncode == 0, f"docker build {name} failed: see {log}"
        note(f"build_{name}_s", time.monotonic() - t)


@pytest.fixture(scope="module")
def lab():
    t0 = time.monotonic()
    os.makedirs(ART, exist_ok=True)
    lab = Lab(dockerlab.make_root())
    try:
        key = os.path.join(LAB, "secrets", "discovery.key")
        if not os.path.exists(key):
            subprocess.run([os.path.join(LAB, "keygen")], cwd=LAB, check=True)
        assert not dockerlab.lab_routes_in_host_ns(), \
            "192.168.42.0/24 already in the host namespace: refusing to run"

        # 1. images, built by a daemon in the host namespace (no bridge)
        lab.dk = dockerlab.Dockerd(lab.root, "build.log")
        lab.dk.start()
        build_images(lab.dk)
        lab.dk.stop()

        # 2. the stack, run by a daemon inside a private namespace
        lab.ns = dockerlab.Netns(f"shoal-dk{os.getpid()}")
        lab.dk = dockerlab.Dockerd(lab.root, "run.log")
        lab.dk.start(lab.ns)
        note("setup_s", time.monotonic() - t0)
        yield lab
    finally:
        if lab.dk is not None:
            if lab.ns is not None:
                try:
                    lab.compose("down", "-t", "5", timeout=180)
                except Exception:
                    pass
            lab.dk.stop()
        keep_logs(lab)
        if lab.ns is not None:
            lab.ns.close()
        dockerlab.remove_root(lab.root)
        note("total_s", time.monotonic() - t0)
        assert not dockerlab.own_processes(lab.root)


def test_compose_config_is_valid(lab):
    out = lab.compose("config").stdout
    assert "192.168.42.0/24" in out and "container_name" not in out


def test_up_three_nodes_serve_in_turn(lab):
    t = time.monotonic()
    lab.compose("up", "-d", "--no-build", "--scale", "webapp=3")
    started = time.monotonic()
    note("compose_up_3_s", started - t)
    wait_for(lambda: len(lab.up_addresses()) == 3, 60, "3 announced nodes up")
    note("join_3_s", time.monotonic() - started)
    seen = set()
    for _ in range(12):
        m = re.search(r"(?im)^x-backend-ip:\s*(\S+)", lab.get("/"))
        assert m, "no x-backend-ip header"
        seen.add(m.group(1))
    assert len(seen) == 3, seen
    # The key reaches both images as a secret; what they read is 0600.
    for svc in ("ha", "webapp"):
        cid = lab.dk.out("ps", "-q", "--filter",
                         f"label=com.docker.compose.project={PROJECT}",
                         "--filter", f"label=com.docker.compose.service={svc}"
                         ).split()[0]
        mode = lab.dk.out("exec", cid, "stat", "-c", "%a",
                          "/run/shoal/discovery.key")
        assert mode == "600", (svc, mode)
    assert not dockerlab.lab_routes_in_host_ns()


def test_scale_to_five(lab):
    t = time.monotonic()
    lab.compose("up", "-d", "--no-build", "--scale", "webapp=5")
    started = time.monotonic()
    note("compose_scale_5_s", started - t)
    wait_for(lambda: len(lab.up_addresses()) == 5, 60, "5 announced nodes up")
    note("join_scale_5_s", time.monotonic() - started)
    labels = [s.get("label") for s in lab.announced().values()]
    assert all(labels), labels


def test_scale_hooks_drive_compose(lab, tmp_path):
    """dist/lab/hooks: compose-scale takes one webapp container away and
    the node leaves shoal's table; compose-autoscale, one round, reads
    shoal_backend_scale_wanted = 1 from a real shoal's /metrics (a
    loopback one whose scale_up holds at once) and adds one back, which
    joins; at SHOAL_SCALE_MAX the hook changes nothing."""
    build = os.environ.get("SHOAL_BUILD") or os.path.join(ROOT, "build")
    hooks = os.path.join(LAB, "hooks")
    env = dict(lab.dk.env, COMPOSE_PROJECT_NAME=PROJECT,
               COMPOSE_FILE=os.path.join(LAB, "compose.yaml"),
               SHOAL_SCALE_MAX="5")
    have = len(lab.webapp_containers())
    t = time.monotonic()
    r = subprocess.run([os.path.join(hooks, "compose-scale"), "down", "app"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "webapp: %d -> %d" % (have, have - 1) in r.stdout, r.stdout
    wait_for(lambda: len(lab.up_addresses()) == have - 1, 60,
             "a node fewer in shoal")
    note("hook_compose_down_s", time.monotonic() - t)
    assert len(lab.webapp_containers()) == have - 1

    import socket
    ports = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    conf = tmp_path / "wants.ini"
    conf.write_text("[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n"
                    "[backend app]\nserver = s1 127.0.0.1:9\n"
                    "scale_up = up_servers < 9 for 0s\n"
                    "[stats]\nbind = 127.0.0.1:%d\n" % tuple(ports))
    sh = subprocess.Popen([os.path.join(build, "shoal"), "-c", str(conf)],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        url = "http://127.0.0.1:%d/metrics" % ports[1]

        def wanted():
            r = subprocess.run(["curl", "-fs", url], capture_output=True,
                               text=True)
            return 'shoal_backend_scale_wanted{backend="app"} 1' in r.stdout
        wait_for(wanted, 20, "the gauge at 1")
        t = time.monotonic()
        r = subprocess.run([os.path.join(hooks, "compose-autoscale"), url,
                            "app"], env=dict(env, ROUNDS="1", COOLDOWN="0"),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "webapp: %d -> %d" % (have - 1, have) in r.stdout, r.stdout
    finally:
        sh.terminate()
        sh.wait(10)
    wait_for(lambda: len(lab.up_addresses()) == have, 60,
             "the node back in shoal")
    note("hook_compose_autoscale_up_s", time.monotonic() - t)
    r = subprocess.run([os.path.join(hooks, "compose-scale"), "up", "app"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "at the maximum" in r.stdout, r.stdout
    assert len(lab.webapp_containers()) == have


def test_stats_page_screenshot(lab):
    shot = os.path.join(ART, "lab-stats.png")
    prof = os.path.join(lab.root, "chromium-profile")
    if os.path.exists(shot):
        os.unlink(shot)
    for _ in range(20):      # some traffic on every node, for the picture
        lab.get("/")
    r = lab.ns_run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--no-first-run", f"--user-data-dir={prof}",
                    "--hide-scrollbars", "--window-size=1280,900",
                    f"--screenshot={shot}", f"http://{HA}:1936/"],
                   timeout=120, check=False)
    assert os.path.getsize(shot) > 10000, r.stderr[-2000:]
    page = lab.ns_run(["curl", "-sf", f"http://{HA}:1936/"]).stdout
    assert page.count("announced") >= 5


def run_client_loop(lab, seconds, stopfile):
    return subprocess.Popen(
        lab.ns.cmd(["python3", os.path.join(HERE, "client.py"),
                    f"http://{HA}/", str(seconds), "100000"]),
        stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, CLIENT_STOP=stopfile))


def test_docker_kill_costs_clients_nothing(lab):
    victim = lab.webapp_containers()[0]
    ip = lab.ip_of(victim) + ":3000"
    assert ip in lab.up_addresses()
    stop = os.path.join(lab.root, "client-stop")
    loop = run_client_loop(lab, 60, stop)
    time.sleep(1.0)  # the loop is running when the node dies (not an assertion)
    t = time.monotonic()
    lab.dk.docker("kill", victim, capture=True)
    wait_for(lambda: ip not in lab.announced(), 30, "killed node to leave")
    note("crash_gone_s", time.monotonic() - t)
    open(stop, "w").close()
    res = json.loads(loop.communicate(timeout=60)[0])
    note("crash_client", {"ok": res["ok"], "errors": res["errors"]})
    # A sequential loop has at most one request on the node when it dies:
    # that one may fail; every other request must succeed.
    assert len(res["errors"]) <= 1, res["errors"]
    assert res["ok"] > 50
    lab.dk.docker("rm", "-f", victim, capture=True)


def test_docker_stop_under_ab_loses_nothing(lab):
    victim = lab.webapp_containers()[0]
    ip = lab.ip_of(victim) + ":3000"
    wait_for(lambda: ip in lab.up_addresses(), 30, "victim up")
    # /healthz: ab counts an answer whose length differs from the first
    # as failed, and GET / answers vary in length.
    ab = subprocess.Popen(lab.ns.cmd(["ab", "-q", "-c", "20", "-n", "6000",
                                      "-s", "10", f"http://{HA}/healthz"]),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    time.sleep(1.0)  # ab is under way when the stop begins
    t = time.monotonic()
    stop = subprocess.Popen([dockerlab.DOCKER, "stop", victim],
                            env=lab.dk.env, stdout=subprocess.DEVNULL)
    wait_for(lambda: ip not in lab.announced(), 30, "stopped node to leave",
             step=0.1)
    note("stop_leave_s", time.monotonic() - t)
    assert stop.wait(60) == 0
    note("docker_stop_s", time.monotonic() - t)
    out = ab.communicate(timeout=300)[0]
    with open(os.path.join(ART, "lab-docker-ab-stop.txt"), "w") as f:
        f.write(out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    complete = re.search(r"Complete requests:\s+(\d+)", out)
    assert failed and complete, out[-2000:]
    note("stop_ab", {"complete": int(complete.group(1)),
                     "failed": int(failed.group(1))})
    assert int(complete.group(1)) == 6000
    assert int(failed.group(1)) == 0, out[-2000:]
    assert "Non-2xx" not in out
    assert ip not in lab.announced()


def test_drain_and_ready_through_admin_port(lab):
    servers = lab.announced()
    up = sorted(a for a, s in servers.items() if s["state"] == "up")
    assert len(up) >= 2
    target = servers[up[0]]
    backend = next(b["name"] for b in lab.stats()["backends"]
                   if any(s["address"] == target["address"]
                          for s in b["servers"]))
    name = f"{backend}/{target['name']}"
    t = time.monotonic()
    out = lab.admin(f"set server {name} state drain")
    assert "error" not in out.lower(), out
    wait_for(lambda: lab.announced()[up[0]]["state"] == "drain", 10,
             "drain in stats")
    note("drain_visible_s", time.monotonic() - t)
    ip = up[0].rsplit(":", 1)[0]
    hits = [re.search(r"(?im)^x-backend-ip:\s*(\S+)", lab.get("/")).group(1)
            for _ in range(20)]
    assert ip not in hits, hits
    out = lab.admin(f"set server {name} state ready")
    assert "error" not in out.lower(), out
    wait_for(lambda: ip in [re.search(r"(?im)^x-backend-ip:\s*(\S+)",
                                      lab.get("/")).group(1)
                            for _ in range(8)], 20, "drained node back")
    assert not dockerlab.lab_routes_in_host_ns()


# --- Docker Swarm: stack.yaml on a one-node swarm of the same daemon.
# The routing mesh needs iptables (off here), so clients enter the
# balancer task's own namespace and connect to its loopback.

SWARM_ADDR = "10.213.0.1"   # inside the test's namespace only


def ha_tasks(lab):
    return lab.dk.out("ps", "-q", "--filter", "label=com.docker.swarm.service.name=lab_ha").split()


def task_servers(lab, cid):
    r = lab.dk.docker("exec", cid, "shoalctl", "show", "stat", "json",
                      check=False, capture=True, timeout=20)
    if r.returncode != 0:
        return {}
    try:
        st = json.loads(r.stdout)
    except ValueError:
        return {}
    return {s["address"]: s["state"] for b in st["backends"]
            for s in b["servers"] if s["source"] == "announced"}


def in_task(lab, cid, argv, **kw):
    pid = lab.dk.out("inspect", "-f", "{{.State.Pid}}", cid)
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--"]
                          + argv, capture_output=True, text=True, **kw)


def test_swarm_stack(lab):
    lab.compose("down", "-t", "5", timeout=180)
    ns = lab.ns.name
    subprocess.run(["ip", "-n", ns, "link", "add", "swarm0", "type", "bridge"],
                   check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{SWARM_ADDR}/24",
                    "dev", "swarm0"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "swarm0", "up"], check=True)
    lab.dk.docker("swarm", "init", "--advertise-addr", SWARM_ADDR, capture=True)
    t = time.monotonic()
    lab.dk.docker("stack", "deploy", "--resolve-image", "never",
                  "-c", "stack.yaml", "lab", cwd=LAB, capture=True)

    def all_see_three():
        tasks = ha_tasks(lab)
        if len(tasks) != 2:
            return False
        seen = [task_servers(lab, c) for c in tasks]
        return all(sum(1 for v in s.values() if v == "up") == 3 for s in seen)
    wait_for(all_see_three, 180, "both ha tasks to list 3 webapp tasks up",
             step=1.0)
    note("swarm_deploy_to_3_up_s", time.monotonic() - t)

    # A rolling update (start-first) of every webapp task under ab:
    # batches of ab -c 20 from inside an ha task, for as long as it runs.
    ha = ha_tasks(lab)[0]
    pid = lab.dk.out("inspect", "-f", "{{.State.Pid}}", ha)
    done = threading.Event()
    outs = []

    def load():
        while not done.is_set() and len(outs) < 100:
            outs.append(subprocess.run(
                ["nsenter", f"--net=/proc/{pid}/ns/net", "--", "ab", "-q",
                 "-c", "20", "-n", "2000", "-s", "10",
                 "http://127.0.0.1/healthz"],
                capture_output=True, text=True, timeout=120).stdout)
    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(1.0)  # ab is under way when the update begins
    t = time.monotonic()
    try:
        lab.dk.docker("service", "update", "--force", "--detach=false",
                      "lab_webapp", capture=True, timeout=300)
        note("swarm_rolling_update_s", time.monotonic() - t)
    finally:
        done.set()
        loader.join(150)
    with open(os.path.join(ART, "lab-docker-ab-swarm-update.txt"), "w") as f:
        f.write("\n".join(outs))
    complete = sum(int(m) for o in outs
                   for m in re.findall(r"Complete requests:\s+(\d+)", o))
    failed = sum(int(m) for o in outs
                 for m in re.findall(r"Failed requests:\s+(\d+)", o))
    note("swarm_update_ab", {"runs": len(outs), "complete": complete,
                             "failed": failed})
    assert complete == 2000 * len(outs), outs[-1][-2000:]
    assert failed == 0
    assert not any("Non-2xx" in o for o in outs)
    wait_for(all_see_three, 60, "3 webapp tasks up after the update")
    lab.dk.docker("stack", "rm", "lab", capture=True)
    assert not dockerlab.lab_routes_in_host_ns()
