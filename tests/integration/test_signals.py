"""
test_signals.py - latency signals measured on real traffic (issue 16):
per server connect time, time to the server's first byte and session
duration, per backend the same summed and the queue wait; p50/p95/p99 of
the last minute in /stats.json, cumulative histograms in /metrics
(checked by the strict parser, promtool and prometheus_client).
"""

import socket

import peers
from conftest import alloc_port
from stats_helpers import (cross_check_prometheus, fetch, fetch_json,
                           parse_prometheus)
from test_admin import servers_table


def test_ttfb_and_session_follow_the_server(start_peer, start_shoal,
                                            tmp_path):
    """A server that waits 300 ms before its first byte shows a TTFB p50
    between 200 ms and 500 ms (the histogram's buckets), a fast one under
    50 ms; session durations follow; the backend sums both and counts its
    queue waits; /metrics carries the histograms and passes promtool."""
    slow = start_peer("source", "--size", "1000", "--delay", "0.3",
                      name="slow")
    fast = start_peer("source", "--size", "1000", name="fast")
    sp, port = alloc_port(), alloc_port()
    text = ("[global]\nthreads = 2\n[frontend web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nserver = slow %s\n"
            "server = fast %s\n[stats]\nbind = 127.0.0.1:%d\n[admin]\n"
            "socket = %s\n" % (port, slow.addr, fast.addr, sp,
                               tmp_path / "admin.sock"))
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    for _ in range(10):
        s = peers.connect(sh.addr)
        s.shutdown(socket.SHUT_WR)
        n, _, err = peers.read_all(s)
        s.close()
        assert n == 1000 and err is None
    sh.wait_sessions(10)
    d = fetch_json(sp)["backends"][0]
    srv = {x["name"]: x["latency"] for x in d["servers"]}
    assert srv["slow"]["ttfb"]["count"] == 5
    assert 200 <= srv["slow"]["ttfb"]["p50"] <= 500, srv["slow"]
    assert srv["fast"]["ttfb"]["p50"] < 50, srv["fast"]
    assert srv["slow"]["session"]["p50"] >= 200
    assert srv["fast"]["connect"]["p99"] < 50
    assert d["latency"]["ttfb"]["count"] == 10
    assert d["latency"]["queue"]["count"] == 10
    assert d["latency"]["queue"]["p99"] < 50
    text = fetch(sp, "/metrics").text()
    assert 'shoal_server_ttfb_seconds_count{backend="app",server="slow"} 5' \
        in text
    assert 'shoal_backend_queue_seconds_count{backend="app"} 10' in text
    # The stats page and `show servers` show the same p95 (ms).
    page = fetch(sp, "/").text()
    row = page[page.index('data-server="app/slow"'):]
    row = row[:row.index("</tr>")]
    assert "time to first byte, last minute: p50 %.3f ms, p95 %.3f ms" % (
        srv["slow"]["ttfb"]["p50"], srv["slow"]["ttfb"]["p95"]) in row, row
    head = page[page.index('data-backend="app"'):]
    assert "ttfb p95" in head[:head.index("</h2>")]
    tab = servers_table(str(tmp_path / "admin.sock"))
    assert 200 <= float(tab["app/slow"]["ttfb_p95_ms"]) <= 500, tab["app/slow"]
    assert float(tab["app/fast"]["ttfb_p95_ms"]) < 50, tab["app/fast"]
    parse_prometheus(text)
    cross_check_prometheus(text)
