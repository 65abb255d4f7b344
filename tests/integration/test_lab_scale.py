"""
test_lab_scale.py - the lab's load manager, done by shoal (issue 16), on
the namespace replica (dist/lab/replica.sh): the balancer's config gains
scale conditions and dist/lab/hooks/replica-scale as its hook.

    POST /delay 300 ms on the two nodes, a bounded load from the client
      -> TTFB p95 over 200 ms for 5 s: the hook adds node3
      -> node3 is announced, checked, and takes requests
    /delay back to 0, a bounded fast load from the client
      -> TTFB p95 falls under 100 ms; after the 10 s cooldown, with few
         sessions per server for 5 s: the hook removes a node

Timing bounds are generous and stated below (x SLACK); the measured times
are printed (pytest -s) and reported in docs/elastic-pools.md.
"""

import json
import os
import time

import pytest

from conftest import SLACK
from test_lab import HA, TOP, Lab, node_ip  # noqa: F401 (skip marker)
import test_lab

pytestmark = test_lab.pytestmark

HOOK = os.path.join(TOP, "dist", "lab", "hooks", "replica-scale")
SCALE = """
scale_up = ttfb_p95 > 200ms and up_servers < 3 for 5s
scale_down = ttfb_p95 < 100ms and sessions_per_server < 1 for 5s
scale_cooldown = 10s
scale_hook = %s
""" % HOOK

UP_S = 30.0 * SLACK      # delay set and load sent -> node3 up in shoal
FALL_S = 30.0 * SLACK    # delay removed, fast load -> p95 under 100 ms
DOWN_S = 40.0 * SLACK    # p95 down -> back to 2 nodes


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("labscale")
    conf = d / "shoal.ini"
    text = open(os.path.join(TOP, "dist", "lab", "shoal.ini")).read()
    # the scale lines go at the end of [backend app]
    head, sep, tail = text.partition("\n[discovery]")
    conf.write_text(head + SCALE + sep + tail)
    lab = Lab(str(d / "state"))
    lab.env.update(SHOAL_LAB_CONF=str(conf), SHOAL_SCALE_MAX="3")
    try:
        lab.run("up", "2", timeout=180)
        yield lab
    finally:
        lab.run("down", check=False, timeout=60)


def delay(lab, ms):
    for n in (1, 2):
        r = lab.client("curl", "-s", "--max-time", "5", "-X", "POST", "-H",
                       "Content-Type: application/json", "-d",
                       json.dumps({"delay": ms}),
                       "http://%s:3000/delay" % node_ip(n))
        assert b"New timeout of %dms" % ms in r.stdout, r.stdout


def scale_doc(lab):
    s = lab.stats()
    return next(b for b in s["backends"] if b["name"] == "app") if s else None


def wait(what, pred, timeout):
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, "timed out: " + what
        time.sleep(0.25)


def test_slow_nodes_get_a_third_then_lose_it(lab):
    assert len(lab.up_addrs()) == 2
    t = {}
    delay(lab, 300)
    t0 = time.monotonic()
    # 60 requests, 3 at a time, 300 ms each: about 6 s of load.
    r = lab.client("ab", "-l", "-q", "-n", "60", "-c", "3",
                   "http://%s/" % HA, timeout=60)
    assert b"Failed requests:        0" in r.stdout, r.stdout
    b = scale_doc(lab)
    assert b["scale"]["signals"]["ttfb_p95"] > 200, b["scale"]
    wait("the up hook runs", lambda: scale_doc(lab)["scale"]["up"]["runs"]
         >= 1, UP_S)
    t["up_hook_done"] = time.monotonic() - t0
    wait("node3 up in shoal", lambda: len(lab.up_addrs()) == 3, UP_S)
    t["node3_up"] = time.monotonic() - t0
    assert "%s:3000" % node_ip(3) in lab.up_addrs()
    seen = lab.backends_seen(6)
    assert node_ip(3) in seen, seen
    # The hook's output is in shoal's log: "scale up: 2 -> 3 node(s)".
    assert "scale hook: scale up: 2 -> 3 node(s)" in lab.log("ha")

    # The load goes away: fast nodes, a bounded burst of fast requests.
    delay(lab, 0)
    t1 = time.monotonic()
    r = lab.client("ab", "-l", "-q", "-n", "2000", "-c", "2",
                   "http://%s/" % HA, timeout=120)
    assert b"Failed requests:        0" in r.stdout, r.stdout
    wait("p95 falls", lambda: (scale_doc(lab)["scale"]["signals"]
                               ["ttfb_p95"] or 1e9) < 100, FALL_S)
    t["p95_below_100ms"] = time.monotonic() - t1
    wait("the down hook runs", lambda: scale_doc(lab)["scale"]["down"]
         ["runs"] >= 1, DOWN_S)
    wait("back to two nodes", lambda: len(lab.up_addrs()) == 2, DOWN_S)
    t["two_nodes_again"] = time.monotonic() - t1
    assert scale_doc(lab)["scale"]["up"]["failed"] == 0
    assert scale_doc(lab)["scale"]["down"]["failed"] == 0
    # The timeline, in order: wanted, hook, node3 joins, ..., node3 leaves.
    ev = [(e["kind"], e["server"], e["text"]) for e in lab.stats()["events"]]
    i_up = next(i for i, e in enumerate(ev) if e[0] == "hook" and
                e[2].startswith("scale up hook started"))
    i_join = next(i for i, e in enumerate(ev) if e[0] == "table" and
                  e[1] == "%s:3000" % node_ip(3) and e[2].startswith(
                      "joined"))
    i_down = next(i for i, e in enumerate(ev) if e[0] == "hook" and
                  e[2].startswith("scale down hook started"))
    i_left = next(i for i, e in enumerate(ev) if e[1] == "%s:3000" %
                  node_ip(3) and (e[2].startswith("left") or
                                  "draining" in e[2]))
    assert i_up < i_join < i_down < i_left, ev
    print("\nlab scale timings (s): " + ", ".join(
        "%s %.1f" % kv for kv in t.items()))
