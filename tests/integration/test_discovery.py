"""
Discovery: signed announcements (DESIGN.md section 6,
docs/discovery-protocol.md).

S27 on loopback: two announcers, both get traffic once their checks pass
(never before), SIGTERM on one removes it within a second while its
in-flight transfer completes intact, kill -9 on the other expires it within
TTL + one interval, a restart is accepted at once. S28: every broken or
replayed datagram moves exactly its counter and leaves the table alone;
warnings are rate-limited. A junk flood does not starve relaying. The
announcer's --check gate and SIGUSR1. Unicast (--target) over IPv4 and
IPv6. Then the same join / leave / crash sequence across hosts: network
namespaces on a bridge, real IPv4 multicast, and IPv6 multicast (ff12::).

Timings printed with -s (pytest -s -k discovery): announcer start to
first routed connection, SIGTERM to removal, kill -9 to expiry.
"""

import datetime
import os
import signal
import socket
import threading
import time

import pytest

import discovery_wire as w
import peers
from conftest import SHOAL_BUILD, SLACK, alloc_port, fmt_hostport, wait_for
from discovery_helpers import (Announcer, Lan, Sender, counters,
                               discovery_config, find_line, free_udp_port,
                               log_index, table_events, wait_line,
                               write_keyfile)

MiB = 1 << 20
KEY = bytes(range(0x40, 0x60))
OTHER_KEY = bytes(range(0x60, 0x80))
REALM = "lab4"
INTERVAL_MS = 300
TTL_MS = INTERVAL_MS // 2 * 7          # what shoal-announce sends


@pytest.fixture
def announcers(tmp_path):
    """Factory: announcers(args, name, netns=None) -> Announcer; every one
    is killed at teardown."""
    made = []

    def start(args, name, netns=None, prefix=()):
        a = Announcer(args, tmp_path, name, netns=netns, prefix=prefix)
        made.append(a)
        return a

    yield start
    problems = []
    for a in made:
        a.cleanup()
        if any(m in a.log() for m in ("Sanitizer", "runtime error:")):
            problems.append("sanitizer report in %s:\n%s"
                            % (a.log_path, a.log()[-3000:]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def ts_of(line_ts):
    """Log timestamp "2026-11-22T19:40:00.123Z" -> seconds (UTC)."""
    return datetime.datetime.strptime(
        line_ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()


def line_times(sh, pattern):
    """The timestamps (s) of every log line matching pattern."""
    import re
    rx = re.compile(pattern)
    return [ts_of(ts) for ts, _, msg in sh.log_lines() if rx.search(msg)]


def line_time(sh, pattern):
    """The timestamp (s) of the first log line matching pattern."""
    import re
    rx = re.compile(pattern)
    for ts, _, msg in sh.log_lines():
        if rx.search(msg):
            return ts_of(ts)
    return None


def session_starts(sh, server):
    """When the sessions relayed to app/server started connecting to it:
    the session line's timestamp minus its total_ms (the accept) plus its
    queue_ms (the wait for an eligible server)."""
    out = []
    for ts, _, msg in sh.log_lines():
        if msg.startswith("session ") and " server=app/%s " % server in msg:
            total = int(msg.split("total_ms=", 1)[1].split()[0])
            queue = int(msg.split("queue_ms=", 1)[1].split()[0])
            out.append(ts_of(ts) - (total - queue) / 1000.0)
    return out


def banner_of(addr, timeout=2.0):
    """Connect through shoal, read the backend's banner line, close."""
    try:
        s = peers.connect(addr, timeout=timeout)
    except OSError:
        return None
    try:
        return peers.read_line(s, timeout) or None
    except OSError:
        return None
    finally:
        s.close()


def loopback_shoal(start_shoal, tmp_path, dport, check="tcp", servers=(),
                   discovery=(), backend=(), log_level="debug"):
    keyfile = write_keyfile(tmp_path, {1: KEY, 2: OTHER_KEY})
    bind = fmt_hostport("127.0.0.1", alloc_port())
    be = [("balance", "roundrobin"), ("check", check),
          ("check_interval", "200ms"), ("check_timeout", "200ms"),
          ("rise", 2), ("fall", 2)] + list(backend)
    disc = [("group", "239.255.76.66"), ("interface", "lo"),
            ("realm", REALM), ("key_file", keyfile),
            ("allow", "127.0.0.0/8"), ("max_skew", "10s")] + list(discovery)
    cfg = discovery_config(bind, dport, backend=be, discovery=disc,
                           servers=servers, log_level=log_level)
    return start_shoal(config_text=cfg, binds=[bind]), keyfile


def announce_args(keyfile, dport, port, key_id=1, extra=()):
    return ["--pool", "app", "--port", port, "--interval",
            "%dms" % INTERVAL_MS, "--group", "239.255.76.66:%d" % dport,
            "--iface", "lo", "--key-file", keyfile, "--key-id", key_id,
            "--realm", REALM] + list(extra)


# --------------------------------------------------------------------------
# The test vector: docs, Python and (in tests/unit/test_codec.c) C agree

def test_vector_matches_the_docs():
    here = os.path.dirname(os.path.abspath(__file__))
    doc = open(os.path.join(here, "..", "..", "docs",
                            "discovery-protocol.md")).read()
    block = doc.split("<!-- test-vector-begin -->", 1)[1].split(
        "<!-- test-vector-end -->", 1)[0]
    hexed = "".join("".join(line.split()[1:]) for line in block.splitlines()
                    if line[:4].strip() and line[:4] != "```")
    v = w.vector()
    assert bytes.fromhex(hexed) == v
    assert "tag = `%s`" % v[-32:].hex() in doc
    seed = os.path.join(here, "..", "fuzz", "corpus", "codec", "vector.bin")
    assert open(seed, "rb").read() == v


def test_vector_load_matches_the_docs():
    """The second vector: the first one's fields plus a load TLV (type 3:
    load 73, 12 connections), built here from the document alone."""
    here = os.path.dirname(os.path.abspath(__file__))
    doc = open(os.path.join(here, "..", "..", "docs",
                            "discovery-protocol.md")).read()
    block = doc.split("<!-- test-vector-load-begin -->", 1)[1].split(
        "<!-- test-vector-load-end -->", 1)[0]
    hexed = "".join("".join(line.split()[1:]) for line in block.splitlines()
                    if line[:4].strip() and line[:4] != "```")
    v = w.signed(key=w.VECTOR_KEY, realm=w.VECTOR_REALM,
                 key_id=w.VECTOR_KEY_ID,
                 tlvs=bytes([3, 5, 73]) + (12).to_bytes(4, "big"),
                 **w.VECTOR_FIELDS)
    assert bytes.fromhex(hexed) == v
    assert "tag = `%s`" % v[-32:].hex() in doc
    seed = os.path.join(here, "..", "fuzz", "corpus", "codec",
                        "vector-load.bin")
    assert open(seed, "rb").read() == v


# --------------------------------------------------------------------------
# S27 on loopback

def test_join_leave_crash_restart(start_shoal, start_peer, announcers,
                                  tmp_path):
    dport = free_udp_port()
    sh, keyfile = loopback_shoal(start_shoal, tmp_path, dport)
    a = start_peer("banner", "--banner", "A\n", name="A")
    b = start_peer("banner", "--banner", "B\n", name="B")
    na, nb = "127.0.0.1:%d" % a.port, "127.0.0.1:%d" % b.port

    # Join: both announced, checked, then routed.
    t0 = time.monotonic()
    ann_a = announcers(announce_args(keyfile, dport, a.port,
                                     extra=["--label", "web-a"]), "a")
    ann_b = announcers(announce_args(keyfile, dport, b.port), "b")
    first = {}
    deadline = t0 + 5 * SLACK
    while len(first) < 2 and time.monotonic() < deadline:
        tag = banner_of(sh.addr)
        if tag in ("A", "B") and tag not in first:
            first[tag] = time.monotonic() - t0
        time.sleep(0.01)
    assert set(first) == {"A", "B"}, "not both routed: %r\n%s" % (
        first, sh.log()[-3000:])
    print("\nannouncer start -> first routed connection: A %.3fs, B %.3fs"
          % (first["A"], first["B"]))
    for name in (na, nb):
        added = line_time(sh, r"server app/%s: added by announcement"
                          % name)
        up = line_time(sh, r"server app/%s: checking -> up" % name)
        assert added is not None and up is not None and added <= up
        # No session reached it before its checks passed (rise = 2).
        early = [t for t in session_starts(sh, name) if t < up - 0.002]
        assert not early, "traffic before the checks passed: %r" % early
    assert "label \"web-a\"" in find_line(sh, "server app/%s: added" % na)

    # Both get their share.
    tags = [banner_of(sh.addr) for _ in range(20)]
    assert tags.count("A") == 10 and tags.count("B") == 10, tags

    # SIGTERM on A with a transfer in flight through A.
    held = None
    for _ in range(10):
        s = peers.connect(sh.addr, timeout=5)
        if peers.read_line(s, 5) == "A":
            held = s
            break
        s.close()
    assert held is not None
    i0 = log_index(sh)
    t_term = time.time()
    ann_a.signal(signal.SIGTERM)
    wait_line(sh, r"server app/%s: removed \(leave\)" % na, 2 * SLACK,
              start=i0)
    dt = line_time(sh, r"server app/%s: removed \(leave\)" % na) - t_term
    print("SIGTERM -> removal: %.3fs" % max(dt, 0.0))
    assert dt < 1.0 * SLACK
    assert ann_a.wait(2) == 0, ann_a.log()
    assert "leaving" in ann_a.log()
    assert all(banner_of(sh.addr) == "B" for _ in range(10))
    res = peers.exchange_sock(held, 4 * MiB, 7, timeout=20)
    held.close()
    assert res["rx_err"] is None and res["tx_err"] is None
    assert res["rx_len"] == 4 * MiB and res["rx_sha"] == res["tx_sha"], \
        "in-flight transfer on the removed server not intact"

    # kill -9 on B: expired within TTL + one interval.
    i0 = log_index(sh)
    t_kill = time.time()
    ann_b.kill()
    wait_line(sh, r"server app/%s: removed \(expired" % nb, 5 * SLACK,
              start=i0)
    dt = line_time(sh, r"server app/%s: removed \(expired" % nb) - t_kill
    print("kill -9 -> expiry: %.3fs (ttl %dms + interval %dms)"
          % (dt, TTL_MS, INTERVAL_MS))
    assert dt <= (TTL_MS + INTERVAL_MS) / 1000.0 * SLACK + 0.1

    # Restart B: a new instance is accepted at once.
    i0 = log_index(sh)
    c0 = counters(sh)
    t_start = time.time()
    ann_b2 = announcers(announce_args(keyfile, dport, b.port), "b2")
    wait_line(sh, r"server app/%s: added by announcement" % nb, 2 * SLACK,
              start=i0)
    dt = line_times(sh, r"server app/%s: added by announcement" % nb)[-1] \
        - t_start
    print("restart -> re-added: %.3fs" % dt)
    assert dt < 0.5 * SLACK
    assert counters(sh)["replay"] == c0["replay"]
    wait_for(lambda: banner_of(sh.addr) == "B", 5 * SLACK,
             what="B routed again")
    assert ann_b2.stop() == 0
    wait_line(sh, r"server app/%s: removed \(leave\)" % nb, 2 * SLACK,
              start=i0)
    sh.check_nl3()


# --------------------------------------------------------------------------
# S28: verification

def test_bad_datagrams_change_nothing(start_shoal, start_peer, tmp_path):
    dport = free_udp_port()
    sh, keyfile = loopback_shoal(start_shoal, tmp_path, dport, check="none")
    x = start_peer("banner", "--banner", "X\n", name="X")
    name = "127.0.0.1:%d" % x.port
    tx = Sender(dport)
    inst = 0x5eed
    seq = [0]

    def good(**kw):
        seq[0] += 1
        f = dict(port=x.port, seq=seq[0], instance=inst, ttl=60000,
                 label="x")
        f.update(kw)
        return w.signed(key=KEY, realm=REALM, key_id=1, **f)

    def deliver(data, verdict, what):
        before = counters(sh)
        ev0 = table_events(sh, name)
        n0 = sum(before.values())
        tx.send(data)
        wait_for(lambda: sum(counters(sh).values()) > n0, 2 * SLACK,
                 what="verdict for %s" % what)
        after = counters(sh)
        delta = {k: after[k] - before[k] for k in after if after[k] !=
                 before[k]}
        assert delta == {verdict: 1}, "%s: counters moved %r, want %s +1" \
            % (what, delta, verdict)
        if verdict != "ok":
            assert table_events(sh, name) == ev0, "%s changed the table" \
                % what
        return after

    first = good()
    deliver(first, "ok", "valid announcement")
    wait_line(sh, r"server app/%s: added by announcement" % name, 1)
    assert banner_of(sh.addr) == "X"

    cases = [
        ("unsigned", w.unsigned(port=x.port, seq=99, instance=inst),
         "bad_mac"),
        ("unknown key id", w.signed(key=KEY, realm=REALM, key_id=9,
                                    port=x.port, seq=99, instance=inst),
         "unknown_key"),
        ("wrong key, valid id", w.signed(key=bytes(32), realm=REALM,
                                         key_id=1, port=x.port, seq=99,
                                         instance=inst), "bad_mac"),
        ("wrong realm", w.signed(key=KEY, realm="other", key_id=1,
                                 port=x.port, seq=99, instance=inst),
         "bad_mac"),
        ("bit flipped in MAC", w.flip(good(), -1, 0), "bad_mac"),
        ("bit flipped in header (state)", w.flip(good(), 4, 1), "bad_mac"),
        ("bit flipped in body (port)", w.flip(good(), 11, 0), "bad_mac"),
        ("truncated", good()[:-5], "malformed"),
        ("header only", good()[:30], "malformed"),
        ("oversized", good() + bytes(500), "malformed"),
        ("trailing byte", good() + b"\0", "malformed"),
        ("reserved != 0", good(reserved=1), "malformed"),
        ("unknown version", good(version=2), "malformed"),
        ("unknown type", good(type_=2), "malformed"),
        ("unknown critical TLV", good(tlvs=bytes([200, 0])), "malformed"),
        ("address 0.0.0.0", good(addr="0.0.0.0"), "malformed"),
        ("replay of the first", first, "replay"),
        ("stale", good(timestamp=w.now_ms() - 60000), "stale"),
        ("from the future", good(timestamp=w.now_ms() + 60000), "stale"),
        ("other pool", good(pool="nope"), "policy"),
        ("not the source address", good(addr="127.0.0.2"), "policy"),
        ("shoal's own address", good(port=sh.port), "policy"),
        ("draining, bad tag", w.flip(good(state=w.DRAINING), 60, 0),
         "bad_mac"),
        ("leaving, stale", good(state=w.LEAVING,
                                timestamp=w.now_ms() - 60000), "stale"),
    ]
    for what, data, verdict in cases:
        deliver(data, verdict, what)
    # Key rotation: the second key of the file works too.
    seq[0] += 1
    deliver(w.signed(key=OTHER_KEY, realm=REALM, key_id=2, port=x.port,
                     seq=seq[0], instance=inst, ttl=60000, label="x"),
            "ok", "signed with key 2")
    assert table_events(sh, name) == [find_line(
        sh, r"server app/%s: added by announcement" % name)]
    assert banner_of(sh.addr) == "X"

    # Warnings: at most one line per verdict per second.
    per = {}
    for ts, lvl, msg in sh.log_lines():
        if lvl == "warn" and " datagram from " in msg:
            v = msg.split()[1]
            key = (v, ts[:19])
            per[key] = per.get(key, 0) + 1
    assert per and max(per.values()) == 1, per

    # Leave, then a replay of an earlier UP does not bring it back.
    deliver(good(state=w.LEAVING), "ok", "leaving")
    wait_line(sh, r"server app/%s: removed \(leave\)" % name, 1)
    deliver(first, "replay", "replay after leave")
    deliver(good(seq=3), "replay", "older seq after leave")
    assert find_line(sh, r"server app/%s: added" % name,
                     start=log_index(sh) - 3) is None
    tx.close()


def test_flood_does_not_starve_relaying(start_shoal, start_peer, tmp_path):
    dport = free_udp_port()
    echo = start_peer("echo")
    # info level: a debug line per junk datagram would be the bottleneck.
    sh, keyfile = loopback_shoal(start_shoal, tmp_path, dport, check="none",
                                 servers=["e1 %s" % echo.addr],
                                 log_level="info")
    # A baseline transfer, then the same under a junk flood.
    base = peers.exchange(sh.addr, 16 * MiB, 1, timeout=30)["elapsed"]
    stop = threading.Event()
    sent = [0]

    def flood():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        junk = w.flip(w.signed(key=KEY, realm=REALM, port=9), 70)
        while not stop.is_set():
            for _ in range(200):
                try:
                    s.sendto(junk, ("127.0.0.1", dport))
                    sent[0] += 1
                except OSError:
                    pass
        s.close()

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    # Transfers for ~1.5 s under the flood.
    worst, n, t_end = 0.0, 0, time.monotonic() + 1.5
    while time.monotonic() < t_end:
        res = peers.exchange(sh.addr, 16 * MiB, 2 + n, timeout=30)
        assert res["rx_sha"] == res["tx_sha"] and res["rx_len"] == 16 * MiB
        worst = max(worst, res["elapsed"])
        n += 1
    cpu = sh.cpu_over(0.5)
    stop.set()
    for t in threads:
        t.join(5)
    print("\n16 MiB through shoal: %.3fs alone, at worst %.3fs (%d runs) "
          "under a flood of %d junk datagrams; shoal CPU %.2fs/0.5s"
          % (base, worst, n, sent[0], cpu))
    assert worst < 3 * base + 1.0 * SLACK
    assert sh.alive()
    warns = [m for _, lvl, m in sh.log_lines()
             if lvl == "warn" and "bad_mac datagram" in m]
    assert 1 <= len(warns) <= 5, warns          # rate-limited, ~1/s
    # Legitimate announcements still get through afterwards.
    x = start_peer("echo", name="x")
    tx = Sender(dport)
    tx.send(w.signed(key=KEY, realm=REALM, port=x.port, label="after"))
    wait_line(sh, r"server app/127.0.0.1:%d: added by announcement"
              % x.port, 2 * SLACK)
    tx.close()


# --------------------------------------------------------------------------
# The announcer: --check gate, SIGUSR1, unicast, IPv6 unicast

def test_check_gate_and_sigusr1(start_shoal, start_peer, announcers,
                                tmp_path):
    dport = free_udp_port()
    sh, keyfile = loopback_shoal(start_shoal, tmp_path, dport)
    port = alloc_port()
    name = "127.0.0.1:%d" % port
    ann = announcers(announce_args(keyfile, dport, port,
                                   extra=["--check", "tcp"]), "gated")
    wait_for(lambda: "not announcing" in ann.log(), 5 * SLACK,
             what="the announcer's first failed check")
    assert datagrams_until_canary(sh, dport) == 1, \
        "the gated announcer sent a datagram"
    assert find_line(sh, "server app/%s" % name) is None, \
        "announced while the service does not answer"
    p = start_peer("banner", "--banner", "P\n", name="P", port=port)
    wait_line(sh, r"server app/%s: added by announcement" % name, 3 * SLACK)
    wait_for(lambda: banner_of(sh.addr) == "P", 5 * SLACK, what="P routed")

    i0 = log_index(sh)
    ann.signal(signal.SIGUSR1)
    wait_line(sh, r"server app/%s: announced draining" % name, 1 * SLACK,
              start=i0)
    assert banner_of(sh.addr, 1) is None      # no eligible server left
    ann.signal(signal.SIGUSR1)
    wait_line(sh, r"server app/%s: announced up" % name, 1 * SLACK,
              start=i0)
    wait_for(lambda: banner_of(sh.addr) == "P", 2 * SLACK, what="P again")

    # The service stops answering: draining, then leaving.
    i0 = log_index(sh)
    p.kill()
    wait_line(sh, r"server app/%s: announced draining" % name, 2 * SLACK,
              start=i0)
    wait_line(sh, r"server app/%s: removed \(leave\)" % name, 4 * SLACK,
              start=i0)
    # It answers again: back.
    i0 = log_index(sh)
    start_peer("banner", "--banner", "P\n", name="P2", port=port)
    wait_line(sh, r"server app/%s: added by announcement" % name, 3 * SLACK,
              start=i0)
    assert ann.stop() == 0


def test_check_http(start_shoal, announcers, tmp_path):
    dport = free_udp_port()
    sh, keyfile = loopback_shoal(start_shoal, tmp_path, dport)
    port = alloc_port()
    srv = subprocess_http(port, tmp_path)
    try:
        good = announcers(announce_args(keyfile, dport, port,
                                        extra=["--check", "http:/"]), "h1")
        wait_line(sh, r"server app/127.0.0.1:%d: added" % port, 3 * SLACK)
        assert good.stop() == 0
        i0 = log_index(sh)
        bad = announcers(announce_args(keyfile, dport, port,
                                       extra=["--check", "http:/missing"]),
                         "h2")
        wait_for(lambda: "not announcing" in bad.log(), 5 * SLACK,
                 what="h2's first failed check")
        assert "HTTP/1.0 404" in bad.log()
        # Everything h2 sent was processed before the canary: nothing.
        assert datagrams_until_canary(sh, dport) == 1, \
            "the gated announcer sent a datagram"
        assert find_line(sh, r"added by announcement", start=i0) is None
        assert bad.stop() == 0
    finally:
        srv.kill()
        srv.wait(5)


def datagrams_until_canary(sh, dport):
    """Send a junk datagram and wait for its verdict; return how many
    datagrams shoal counted meanwhile. 1 proves nothing else arrived
    before the canary (shoal reads its socket in order)."""
    n0 = sum(counters(sh).values())
    tx = Sender(dport)
    tx.send(b"canary")
    tx.close()
    wait_for(lambda: sum(counters(sh).values()) > n0, 2 * SLACK,
             what="the canary's verdict")
    return sum(counters(sh).values()) - n0


def subprocess_http(port, tmp_path):
    import subprocess
    p = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--bind",
                          "127.0.0.1", str(port)], cwd=str(tmp_path),
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for(lambda: peers_connectable(("127.0.0.1", port)), 5,
             what="http.server")
    return p


def peers_connectable(addr):
    try:
        peers.connect(addr, timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_unicast_target(start_shoal, start_peer, announcers, tmp_path,
                        family):
    dport = free_udp_port()
    lo = "::1" if family == "ipv6" else "127.0.0.1"
    group = "ff12::4c42:4431" if family == "ipv6" else "239.255.76.66"
    allow = "::1/128" if family == "ipv6" else "127.0.0.0/8"
    keyfile = write_keyfile(tmp_path, {1: KEY})
    bind = fmt_hostport(lo, alloc_port())
    cfg = discovery_config(bind, dport, backend=[("check", "tcp"),
                                                 ("check_interval", "200ms"),
                                                 ("rise", 1)],
                           discovery=[("group", group), ("interface", "lo"),
                                      ("realm", REALM),
                                      ("key_file", keyfile),
                                      ("allow", allow)])
    sh = start_shoal(config_text=cfg, binds=[bind])
    p = start_peer("banner", "--banner", "U\n", name="U", host=lo)
    name = fmt_hostport(lo, p.port)
    ann = announcers(["--pool", "app", "--port", p.port, "--interval",
                      "%dms" % INTERVAL_MS, "--target",
                      fmt_hostport(lo, dport), "--key-file", keyfile,
                      "--realm", REALM], "uni-" + family)
    wait_line(sh, r"server app/%s: added by announcement"
              % name.replace("[", r"\[").replace("]", r"\]"), 2 * SLACK)
    wait_for(lambda: banner_of(sh.addr) == "U", 5 * SLACK, what="routed")
    assert ann.stop() == 0
    wait_line(sh, r"removed \(leave\)", 2 * SLACK)


def test_supervised_and_pid1(start_shoal, start_peer, announcers,
                             tmp_path):
    """Under a supervisor the announcer may start with signals blocked or
    ignored, or be PID 1 of a container: SIGTERM must still make it
    leave and exit 0."""
    import subprocess
    dport = free_udp_port()
    sh, keyfile = loopback_shoal(start_shoal, tmp_path, dport, check="none")
    p = start_peer("echo", name="p")
    name = "127.0.0.1:%d" % p.port
    args = [str(a) for a in announce_args(keyfile, dport, p.port)]
    bin_ = os.path.join(SHOAL_BUILD, "shoal-announce")

    def blocked():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM,
                                                  signal.SIGUSR1})
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    logf = open(os.path.join(str(tmp_path), "blocked.log"), "wb")
    proc = subprocess.Popen([bin_] + args, preexec_fn=blocked,
                            stdin=subprocess.DEVNULL, stdout=logf,
                            stderr=logf)
    try:
        wait_line(sh, r"server app/%s: added" % name, 2 * SLACK)
        i0 = log_index(sh)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        wait_line(sh, r"server app/%s: removed \(leave\)" % name,
                  1 * SLACK, start=i0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        logf.close()

    # PID 1 of its own PID namespace; its parent dies -> SIGTERM.
    i0 = log_index(sh)
    u = announcers(args, "pid1", prefix=["unshare", "--pid", "--fork",
                                         "--kill-child=SIGTERM"])
    wait_line(sh, r"server app/%s: added" % name, 2 * SLACK, start=i0)
    i0 = log_index(sh)
    u.kill()
    wait_line(sh, r"server app/%s: removed \(leave\)" % name, 1 * SLACK,
              start=i0)


def test_refuses_open_key_file(tmp_path):
    import subprocess
    kf = write_keyfile(tmp_path, {1: KEY}, name="open.key", mode=0o644)
    r = subprocess.run([os.path.join(SHOAL_BUILD, "shoal-announce"), "--pool",
        "app", "--port", "1", "--key-file", kf], capture_output=True,
        text=True, timeout=10)
    assert r.returncode == 1
    assert "too open" in r.stderr and "chmod 600" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# Across hosts: namespaces on a bridge, real multicast

def lan_sequence(lan, start_shoal, start_peer, announcers, tmp_path, v6):
    """shoal on host lb, backends b1 and b2 announcing over multicast:
    join, SIGTERM (leave), kill -9 (expiry), restart."""
    dport = 7466
    keyfile = write_keyfile(tmp_path, {1: KEY})
    group = "ff12::4c42:4431" if v6 else "239.255.76.66"
    host = lan.v6 if v6 else lan.v4
    bind = lan.hostport("lb", 8080, v6)
    cfg = discovery_config(
        bind, dport,
        backend=[("check", "tcp"), ("check_interval", "200ms"),
                 ("rise", 2), ("fall", 2)],
        discovery=[("group", group), ("interface", "eth0"),
                   ("realm", REALM), ("key_file", keyfile),
                   ("allow", "fd77::/64" if v6 else "10.77.0.0/24")])
    sh = start_shoal(config_text=cfg, binds=[bind], netns=lan.ns["lb"])
    assert find_line(sh, "cannot join") is None, sh.log()
    backs, anns = {}, {}
    for h in ("b1", "b2"):
        backs[h] = start_peer("tag", "--close", host=host[h], name=h,
                              netns=lan.ns[h])
    gspec = ("[%s]:%d" if v6 else "%s:%d") % (group, dport)

    def announce(h):
        return announcers(["--pool", "app", "--port", backs[h].port,
                           "--interval", "%dms" % INTERVAL_MS,
                           "--iface", "eth0", "--group", gspec,
                           "--key-file", keyfile, "--realm", REALM],
                          h, netns=lan.ns[h])

    t0 = time.monotonic()
    for h in ("b1", "b2"):
        anns[h] = announce(h)
    names = {h: fmt_hostport(host[h], backs[h].port) for h in backs}
    esc = {h: names[h].replace("[", r"\[").replace("]", r"\]")
           for h in names}
    for h in ("b1", "b2"):
        wait_line(sh, r"server app/%s: checking -> up" % esc[h], 5 * SLACK)
    print("\n[%s] both up %.3fs after the announcers started"
          % ("v6" if v6 else "v4", time.monotonic() - t0))

    def spread(n=10):
        c = start_peer("client", "--count", n, "--mode", "tag",
                       host=host["lb"], port=8080, name="client",
                       netns=lan.ns["lb"], wait=True)
        c.wait_events("done", 1, timeout=20 * SLACK)
        tags = [e.get("tag") for e in c.conns()]
        c.kill()
        return tags

    tags = spread()
    assert tags.count("b1") == 5 and tags.count("b2") == 5, tags

    i0 = log_index(sh)
    anns["b1"].signal(signal.SIGTERM)
    dt = wait_line(sh, r"server app/%s: removed \(leave\)" % esc["b1"],
                   2 * SLACK, start=i0)
    print("[%s] SIGTERM -> removal %.3fs" % ("v6" if v6 else "v4", dt))
    assert dt < 1.0 * SLACK
    assert anns["b1"].wait(2) == 0
    assert spread(4) == ["b2"] * 4

    i0 = log_index(sh)
    anns["b2"].kill()
    dt = wait_line(sh, r"server app/%s: removed \(expired" % esc["b2"],
                   5 * SLACK, start=i0)
    print("[%s] kill -9 -> expiry %.3fs" % ("v6" if v6 else "v4", dt))
    assert dt <= (TTL_MS + INTERVAL_MS) / 1000.0 * SLACK + 0.1

    i0 = log_index(sh)
    anns["b2"] = announce("b2")
    dt = wait_line(sh, r"server app/%s: added by announcement" % esc["b2"],
                   2 * SLACK, start=i0)
    print("[%s] restart -> re-added %.3fs" % ("v6" if v6 else "v4", dt))
    assert dt < 0.5 * SLACK
    wait_line(sh, r"server app/%s: checking -> up" % esc["b2"], 5 * SLACK,
              start=i0)
    assert spread(2) == ["b2"] * 2
    c = counters(sh)
    assert c["bad_mac"] == c["malformed"] == c["policy"] == 0, c
    for h in ("b1", "b2"):
        anns[h].cleanup()
    return sh


def test_lan_ipv4_multicast(netns, start_shoal, start_peer, announcers,
                            tmp_path):
    lan = Lan(netns, ["lb", "b1", "b2"])
    lan_sequence(lan, start_shoal, start_peer, announcers, tmp_path,
                 v6=False)


def test_lan_ipv6_multicast(netns, start_shoal, start_peer, announcers,
                            tmp_path):
    lan = Lan(netns, ["lb", "b1", "b2"])
    lan_sequence(lan, start_shoal, start_peer, announcers, tmp_path,
                 v6=True)
