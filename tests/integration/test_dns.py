"""
test_dns.py - servers found in DNS (`[backend] resolve = NAME:PORT`,
discovery/dns.c), against dnsmasq (Debian's dnsmasq-base) serving a hosts
file on loopback: the way Swarm's `tasks.NAME`, a Kubernetes headless
Service or Consul's DNS interface hand out one address per replica.

Scaling is a rewrite of the hosts file and a SIGHUP to dnsmasq; the
servers are tag peers on 127.0.0.11, .12, ... Raw UDP responders stand in
only for what no sane server sends (SERVFAIL on purpose, garbage, and
silence).
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

import peers
from conftest import SLACK, alloc_port, run_shoal_check, wait_for
from test_reload import hup

DNSMASQ = "/usr/sbin/dnsmasq"
TTL_BOUND = 1.0 + 0.5 + 1.0     # local-ttl 1 s, resolve_min 500ms, slack


class Dnsmasq:
    def __init__(self, d, extra=()):
        self.hosts = os.path.join(d, "hosts")
        self.port = alloc_port()
        self.write({})
        self.proc = subprocess.Popen(
            [DNSMASQ, "--no-daemon", "--no-resolv", "--no-hosts",
             "--addn-hosts=" + self.hosts, "--port=%d" % self.port,
             "--listen-address=127.0.0.1", "--bind-interfaces",
             "--local-ttl=1", "--local=/test/", "--pid-file=",
             "--log-facility=" + os.path.join(d, "dnsmasq.log")]
            + list(extra), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.listening, 10 * SLACK, 0.05, what="dnsmasq")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    def write(self, names):
        """names: {name: [ip, ...]}; dnsmasq reads it at SIGHUP."""
        with open(self.hosts + ".new", "w") as f:
            for name, ips in names.items():
                for ip in ips:
                    f.write("%s %s\n" % (ip, name))
        os.replace(self.hosts + ".new", self.hosts)

    def set(self, names):
        self.write(names)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def dnsmasq(tmp_path):
    made = []

    def make(extra=()):
        d = Dnsmasq(str(tmp_path), extra)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


class Responder:
    """A raw UDP name server that answers every query with `mode`:
    'servfail', 'garbage' or 'silent' (reads and drops)."""

    def __init__(self, mode):
        self.mode = mode
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.s.settimeout(0.2)
        self.stopped = False
        self.queries = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stopped:
            try:
                q, peer = self.s.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.mode == "servfail" and len(q) >= 12:
                # the question back, QR + RA set, RCODE 2 (SERVFAIL)
                self.s.sendto(q[:2] + bytes([0x81, 0x82]) + q[4:6] +
                              b"\x00\x00\x00\x00\x00\x00" + q[12:], peer)
            elif self.mode == "garbage" and len(q) >= 2:
                self.s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x05" +
                              os.urandom(40), peer)

    def stop(self):
        self.stopped = True
        self.t.join(2)
        self.s.close()


def config(name_port, resolvers, servers_extra=(), backend_extra=(),
           stats_port=None, bind_port=None):
    lines = ["[global]", "threads = 2", "grace = 2s", "",
             "[frontend web]", "bind = 127.0.0.1:%d" % bind_port,
             "backend = app", "",
             "[backend app]", "resolve = %s" % name_port,
             "resolvers = %s" % resolvers, "resolve_min = 500ms",
             "resolve_hold = 2s", "timeout_connect = 1s", "retries = 1"]
    lines += list(backend_extra) + list(servers_extra)
    if stats_port:
        lines += ["", "[stats]", "bind = 127.0.0.1:%d" % stats_port]
    return "\n".join(lines) + "\n"


def start(start_shoal, name_port, resolvers, backend_extra=()):
    port, sp = alloc_port(), alloc_port()
    sh = start_shoal(config_text=config(name_port, resolvers,
                                        backend_extra=backend_extra,
                                        stats_port=sp, bind_port=port),
                     binds=["127.0.0.1:%d" % port])
    sh.stats_port = sp
    return sh


def stats(sh, timeout=5.0):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats.json"
                                % sh.stats_port, timeout=timeout) as r:
        return json.load(r)


def dns_servers(sh):
    return sorted(s["address"] for s in stats(sh)["backends"][0]["servers"]
                  if s["source"] == "dns")


def tags(start_peer, ips, port):
    return [start_peer("tag", "--close", host=ip, port=port,
                       name="n" + ip.rsplit(".", 1)[1]) for ip in ips]


def test_scale_up_and_down_follows_dns(start_peer, start_shoal, dnsmasq):
    """Two, then three, then one address for web.test: shoal's servers
    follow each change within the TTL bound (local-ttl 1 s, resolve_min
    500 ms), traffic reaches every server found, and a server that leaves
    the answer lets its running session finish."""
    port = alloc_port()
    ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    tags(start_peer, ips, port)
    holder = start_peer("tag", host="127.0.0.14", port=port, name="h14")
    dns = dnsmasq()
    dns.set({"web.test": ips[:2]})
    sh = start(start_shoal, "web.test:%d" % port, "127.0.0.1:%d" % dns.port)
    want = lambda ips_: sorted("%s:%d" % (i, port) for i in ips_)  # noqa
    sh.wait_for(lambda: dns_servers(sh) == want(ips[:2]), TTL_BOUND,
                what="two servers")
    seen = {peers.read_tag(sh.addr) for _ in range(6)}
    assert seen == {"n11", "n12"}
    t0 = time.monotonic()
    dns.set({"web.test": ips})
    sh.wait_for(lambda: dns_servers(sh) == want(ips), TTL_BOUND,
                what="three servers")
    up_s = time.monotonic() - t0
    seen = {peers.read_tag(sh.addr) for _ in range(9)}
    assert seen == {"n11", "n12", "n13"}
    # a session on .14, then .14 is the only one left: others leave
    dns.set({"web.test": ["127.0.0.14"]})
    sh.wait_for(lambda: dns_servers(sh) == want(["127.0.0.14"]),
                TTL_BOUND, what="one server")
    s, t = peers.open_tagged(sh.addr)
    assert t == "h14"
    dns.set({"web.test": ["127.0.0.11"]})
    t0 = time.monotonic()
    sh.wait_for(lambda: dns_servers(sh) == want(["127.0.0.11"]), TTL_BOUND,
                what="the held server leaves the table")
    down_s = time.monotonic() - t0
    s.sendall(b"x")
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.recv(1)           # still open: its session finishes on its own
    s.close()
    print("dns scale: up %.2fs, down %.2fs" % (up_s, down_s))
    assert holder.alive()


def test_cname_chain_and_ipv6(start_peer, start_shoal, dnsmasq):
    """A name that is a CNAME of a CNAME of web.test, with an A and an
    AAAA record: both addresses become servers."""
    port = alloc_port()
    start_peer("tag", "--close", host="127.0.0.11", port=port, name="v4")
    start_peer("tag", "--close", host="::1", port=port, name="v6")
    dns = dnsmasq(["--cname=alias.test,mid.test", "--cname=mid.test,web.test"])
    dns.set({"web.test": ["127.0.0.11", "::1"]})
    sh = start(start_shoal, "alias.test:%d" % port, "127.0.0.1:%d" % dns.port)
    sh.wait_for(lambda: dns_servers(sh) == sorted(
        ["127.0.0.11:%d" % port, "[::1]:%d" % port]), TTL_BOUND,
        what="A and AAAA through two CNAMEs")
    assert {peers.read_tag(sh.addr) for _ in range(6)} == {"v4", "v6"}


def test_no_such_name_holds_then_empties(start_peer, start_shoal, dnsmasq):
    """The name disappears (NXDOMAIN): the servers stay for resolve_hold
    (2 s), then leave; when the name is back, so are they."""
    port = alloc_port()
    tags(start_peer, ["127.0.0.11"], port)
    dns = dnsmasq()
    dns.set({"web.test": ["127.0.0.11"]})
    sh = start(start_shoal, "web.test:%d" % port, "127.0.0.1:%d" % dns.port)
    sh.wait_for(lambda: len(dns_servers(sh)) == 1, TTL_BOUND)
    dns.set({"other.test": ["127.0.0.99"]})
    t0 = time.monotonic()
    sh.wait_for(lambda: any("has no address" in m
                            for _, _, m in sh.log_lines()), TTL_BOUND)
    assert len(dns_servers(sh)) == 1        # held
    sh.wait_for(lambda: dns_servers(sh) == [], 2 + TTL_BOUND)
    gone = time.monotonic() - t0
    assert stats(sh)["dns"][0]["empty"] >= 2
    assert gone >= 2.0 - 0.2, gone
    dns.set({"web.test": ["127.0.0.11"]})
    sh.wait_for(lambda: len(dns_servers(sh)) == 1, TTL_BOUND)
    assert peers.read_tag(sh.addr) == "n11"


@pytest.mark.parametrize("mode", ["servfail", "garbage", "silent"])
def test_failing_resolver_keeps_the_set(start_peer, start_shoal, dnsmasq,
                                        mode):
    """The name server turns bad (SERVFAIL, malformed answers, silence):
    the servers found before stay and serve, the failure is logged once,
    and the control loop never stalls: stats answer within 0.5 s during
    the resolver's timeouts."""
    port = alloc_port()
    tags(start_peer, ["127.0.0.11"], port)
    dns = dnsmasq()
    dns.set({"web.test": ["127.0.0.11"]})
    bad = Responder(mode)
    try:
        sp, bp = alloc_port(), alloc_port()
        text = config("web.test:%d" % port, "127.0.0.1:%d" % dns.port,
                      stats_port=sp, bind_port=bp)
        sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % bp])
        sh.stats_port = sp
        sh.wait_for(lambda: len(dns_servers(sh)) == 1, TTL_BOUND)
        hup(sh, text.replace("resolvers = 127.0.0.1:%d" % dns.port,
                             "resolvers = 127.0.0.1:%d" % bad.port))
        sh.wait_for(lambda: bad.queries >= 1, 5)
        worst = 0.0
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            t0 = time.monotonic()
            stats(sh, timeout=2)
            worst = max(worst, time.monotonic() - t0)
        assert worst < 0.5 * SLACK, worst
        sh.wait_for(lambda: any("resolving web.test failed" in m
                                for _, _, m in sh.log_lines()), 5)
        fails = [m for _, _, m in sh.log_lines()
                 if "resolving web.test failed" in m]
        assert len(fails) == 1, fails
        w = stats(sh)["dns"][0]
        assert w["failures"] >= 1 and w["error"] and w["servers"] == 1, w
        assert len(dns_servers(sh)) == 1
        assert peers.read_tag(sh.addr) == "n11"
    finally:
        bad.stop()


def test_thousand_records_over_tcp(start_shoal, dnsmasq):
    """1 000 A records for one name (more than a UDP answer holds: c-ares
    gets the truncated answer and asks again over TCP); max_discovered =
    1000 keeps them all, max_discovered = 100 keeps 100."""
    ips = ["127.0.%d.%d" % (1 + i // 250, 1 + i % 250) for i in range(1000)]
    dns = dnsmasq()
    dns.set({"many.test": ips})
    sh = start(start_shoal, "many.test:9", "127.0.0.1:%d" % dns.port,
               backend_extra=["max_discovered = 1000"])
    sh.wait_for(lambda: len(dns_servers(sh)) == 1000, 10,
                what="1000 servers")
    sh2 = start(start_shoal, "many.test:9", "127.0.0.1:%d" % dns.port,
                backend_extra=["max_discovered = 100"])
    sh2.wait_for(lambda: len(dns_servers(sh2)) == 100, 10,
                 what="100 servers")


def test_reload_adds_and_removes_resolve(start_peer, start_shoal, dnsmasq):
    """A reload that drops `resolve` takes its servers away; one that adds
    it back finds them again."""
    port = alloc_port()
    tags(start_peer, ["127.0.0.11"], port)
    dns = dnsmasq()
    dns.set({"web.test": ["127.0.0.11"]})
    sp, bp = alloc_port(), alloc_port()
    text = config("web.test:%d" % port, "127.0.0.1:%d" % dns.port,
                  servers_extra=["server = s9 127.0.0.1:9"], stats_port=sp,
                  bind_port=bp)
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % bp])
    sh.stats_port = sp
    sh.wait_for(lambda: len(dns_servers(sh)) == 1, TTL_BOUND)
    hup(sh, text.replace("resolve = web.test:%d\n" % port, ""))
    sh.wait_for(lambda: dns_servers(sh) == [], 2)
    hup(sh, text)
    sh.wait_for(lambda: len(dns_servers(sh)) == 1, TTL_BOUND)


@pytest.mark.parametrize("line,msg", [
    ("resolve = web.test", "expected NAME:PORT"),
    ("resolve = web..test:80", "expected NAME:PORT"),
    ("resolve = web.test:0", "port must be 1-65535"),
    ("resolvers = nowhere", "expected name server addresses"),
    ("resolve_min = 10s\nresolve_max = 1s", "resolve_min is above"),
    ("resolve_srv = _web._tcp.x.test", "resolve and resolve_srv both"),
])
def test_config_errors(tmp_path, line, msg):
    """Bad resolve lines are refused with FILE:LINE and the reason."""
    path = str(tmp_path / "bad.ini")
    with open(path, "w") as f:
        base = "" if line.startswith("resolve =") else \
            "resolve = ok.test:80\n"
        f.write("[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n\n"
                "[backend app]\n%s%s\n" % (alloc_port(), base, line))
    rc, out = run_shoal_check(path)
    assert rc != 0 and "%s:" % path in out and msg in out, out


def test_srv_targets_ports_weights_priorities(start_peer, start_shoal,
                                              dnsmasq):
    """resolve_srv = _web._tcp.svc.test with three records: two targets on
    their own ports with weights 10 and 30 (server weights 10 and 30, so
    1:3), and one with a higher priority value (a backup: used only when
    the others cannot be)."""
    p1, p2, p3 = alloc_port(), alloc_port(), alloc_port()
    start_peer("tag", "--close", host="127.0.0.11", port=p1, name="a")
    start_peer("tag", "--close", host="127.0.0.12", port=p2, name="b")
    start_peer("tag", "--close", host="127.0.0.13", port=p3, name="c")
    dns = dnsmasq(["--srv-host=_web._tcp.svc.test,a.test,%d,10,10" % p1,
                   "--srv-host=_web._tcp.svc.test,b.test,%d,10,30" % p2,
                   "--srv-host=_web._tcp.svc.test,c.test,%d,20,50" % p3])
    dns.set({"a.test": ["127.0.0.11"], "b.test": ["127.0.0.12"],
             "c.test": ["127.0.0.13"]})
    port, sp = alloc_port(), alloc_port()
    text = config("x.test:1", "127.0.0.1:%d" % dns.port, stats_port=sp,
                  bind_port=port).replace(
        "resolve = x.test:1", "resolve_srv = _web._tcp.svc.test")
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    sh.stats_port = sp
    sh.wait_for(lambda: len(dns_servers(sh)) == 3, TTL_BOUND)
    by = {s["address"]: s for s in stats(sh)["backends"][0]["servers"]}
    a, b, c = (by["127.0.0.11:%d" % p1], by["127.0.0.12:%d" % p2],
               by["127.0.0.13:%d" % p3])
    assert (a["weight"], b["weight"]) == (10, 30), (a, b)
    assert not a["backup"] and not b["backup"] and c["backup"], (a, b, c)
    got = [peers.read_tag(sh.addr) for _ in range(40)]
    assert got.count("a") == 10 and got.count("b") == 30, got


def test_dns_servers_are_health_checked(start_peer, start_shoal, dnsmasq):
    """Servers found in DNS are checked like any other: of two addresses,
    the one where nothing listens goes down and gets no traffic; /metrics
    counts the answers."""
    port = alloc_port()
    tags(start_peer, ["127.0.0.11"], port)
    dns = dnsmasq()
    dns.set({"web.test": ["127.0.0.11", "127.0.0.15"]})
    sh = start(start_shoal, "web.test:%d" % port, "127.0.0.1:%d" % dns.port,
               backend_extra=["check = tcp", "check_interval = 200ms",
                              "fall = 1", "rise = 1"])

    def states():
        return {s["address"]: s["state"]
                for s in stats(sh)["backends"][0]["servers"]}
    sh.wait_for(lambda: states() == {"127.0.0.11:%d" % port: "up",
                                     "127.0.0.15:%d" % port: "down"},
                5, what="the silent address down")
    assert {peers.read_tag(sh.addr) for _ in range(6)} == {"n11"}
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics"
                                % sh.stats_port, timeout=5) as r:
        text = r.read().decode()
    assert 'shoal_dns_servers{backend="app",name="web.test"} 2' in text
    assert 'shoal_dns_answers_total{backend="app",name="web.test"}' in text
