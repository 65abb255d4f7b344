"""
A junk flood on the discovery port must not expire a healthy announced
server (issue 12, 2.5). shoal-announce announces one server every second
(ttl 3.5 s) over unicast while other processes send junk datagrams (a
valid header with a bad tag, the most expensive junk to refuse) at a set
rate; the server must stay, and its announcements keep being accepted.

The flood is bounded in count and time, sent to 127.0.0.1 only.
SHOAL_FLOOD_RATES="50000,100000,200000" runs the measurement at other
rates (the default run uses one); SHOAL_FLOOD_BIN=/tmp/udpflood (built
from bench/probes/udpflood.c) sends faster than Python can.
"""

import multiprocessing
import os
import socket
import time

import pytest

from conftest import SLACK, alloc_port, fmt_hostport, wait_for
from discovery_helpers import (ANNOUNCE_BIN, discovery_config, free_udp_port,
                               write_keyfile)
import discovery_wire as w

KEY = bytes(range(32))
REALM = "lab"
RATES = [int(r) for r in os.environ.get("SHOAL_FLOOD_RATES",
                                          "100000").split(",")]
FLOOD_S = float(os.environ.get("SHOAL_FLOOD_SECONDS", "8"))


def _flood(dport, rate, seconds, out):
    """Send junk at `rate` datagrams/s for `seconds`: bursts every 1 ms."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk = w.flip(w.signed(key=KEY, realm=REALM, port=9), 70)
    dst = ("127.0.0.1", dport)
    sent, t0 = 0, time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * rate)
        while sent < due:
            try:
                s.sendto(junk, dst)
            except OSError:
                pass
            sent += 1
            if sent % 256 == 0 and time.monotonic() >= end:
                break
        time.sleep(0.0005)
    s.close()
    out.put(sent)


def flood(dport, rate, seconds, procs=2):
    """Flood from `procs` processes; returns the datagrams sent."""
    tool = os.environ.get("SHOAL_FLOOD_BIN")
    if tool:
        import subprocess
        import tempfile
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(w.flip(w.signed(key=KEY, realm=REALM, port=9), 70))
        try:
            r = subprocess.run([tool, str(dport), str(rate), str(seconds),
                                f.name], capture_output=True, text=True,
                               timeout=seconds + 30, check=True)
        finally:
            os.unlink(f.name)
        return int(r.stdout.split()[0])
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=_flood,
                                  args=(dport, rate / procs, seconds, q))
          for _ in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get(timeout=seconds + 30) for _ in ps)
    for p in ps:
        p.join(10)
    return total


@pytest.mark.parametrize("rate", RATES)
def test_announcer_holds_its_server_under_junk_flood(start_shoal, start_peer,
                                                     tmp_path, rate):
    dport = free_udp_port()
    app = start_peer("echo", name="app")
    keyfile = write_keyfile(tmp_path, {1: KEY})
    bind = fmt_hostport("127.0.0.1", alloc_port())
    cfg = discovery_config(bind, dport, log_level="info",
                           backend=[("check", "none")],
                           discovery=[("realm", REALM), ("key_file", keyfile),
                                      ("allow", "127.0.0.0/8"),
                                      ("interface", "lo")])
    sh = start_shoal(config_text=cfg, binds=[bind],
                     allow_errors=(r"bad_mac datagram",))
    ann = [ANNOUNCE_BIN, "--pool", "app", "--port", str(app.port),
           "--addr", "127.0.0.1", "--interval", "1s",
           "--target", "127.0.0.1:%d" % dport, "--key-file", keyfile,
           "--key-id", "1", "--realm", REALM]
    import subprocess
    a = subprocess.Popen(ann, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        name = "127.0.0.1:%d" % app.port
        wait_for(lambda: "server app/%s: added by announcement" % name
                 in sh.log(), 5 * SLACK, what="announced server added")
        cpu0 = sh.cpu_seconds()
        t0 = time.monotonic()
        sent = flood(dport, rate, FLOOD_S)
        took = time.monotonic() - t0
        cpu = sh.cpu_seconds() - cpu0
        expired = "server app/%s: removed (expired" % name in sh.log()
        print("\nflood %d/s asked, %.0f/s sent for %.1fs: server %s; shoal "
              "CPU %.0f%%" % (rate, sent / took, took,
                              "EXPIRED" if expired else "held",
                              100 * cpu / took))
        assert not expired, "a 1 s announcer lost its server under a " \
            "flood of %.0f junk datagrams/s" % (sent / took)
    finally:
        a.terminate()
        a.wait(10)
