"""
test_explain.py - `shoalctl explain` and `shoalctl report` (issue 16).

explain: for a client address, the server a new connection would get now
and, for every other server, why not; then a real connection from that
client goes where explain said (session log), and the pick is logged at
debug. report: a Markdown snapshot that a Markdown renderer (Python-
Markdown, tables extension) turns into the tables it promises.
"""

import re
import socket
import subprocess

import markdown

import peers
from conftest import alloc_port
from test_admin import SHOALCTL, admin


def ctl(sock, *args):
    r = subprocess.run([SHOALCTL, "-s", sock] + list(args),
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return r.stdout


def lines_of(out):
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^  (\S+)\s+(.*)$", out, re.M)}


def test_explain_says_where_and_why_not(start_peer, start_shoal, tmp_path):
    peers_ = {n: start_peer("echo", name=n) for n in
              ("s1", "s2", "s3", "s4", "s5")}
    dead = alloc_port()                  # nothing listens: check fails
    sock = str(tmp_path / "admin.sock")
    port = alloc_port()
    text = ("[global]\nthreads = 2\nlog_level = debug\n[frontend web]\n"
            "bind = 127.0.0.1:%d\nbackend = app\n[backend app]\n"
            "check = tcp\ncheck_interval = 200ms\nrise = 1\nfall = 1\n"
            "server = s1 %s\nserver = s2 %s\nserver = s3 %s\n"
            "server = s4 %s backup\nserver = s5 %s maxconn=1\n"
            "server = s6 127.0.0.1:%d\n[admin]\nsocket = %s\n"
            % (port, peers_["s1"].addr, peers_["s2"].addr,
               peers_["s3"].addr, peers_["s4"].addr, peers_["s5"].addr,
               dead, sock))
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    sh.wait_for(lambda: "down" in admin(sock, "show servers"),
                timeout=10, what="s6 down")
    admin(sock, "set server app/s2 state drain")
    admin(sock, "set server app/s3 state maint")
    admin(sock, "set server app/s1 fault delay 50ms")
    # two held sessions: roundrobin gives one to s1, one to s5 (full)
    held = []
    for _ in range(2):
        c = peers.connect(sh.addr)
        c.sendall(b"x")
        assert c.recv(1) == b"x"
        held.append(c)
    out = ctl(sock, "explain", "10.1.2.3")
    assert out.startswith("client 10.1.2.3:40000 -> frontend web -> "
                          "backend app (balance roundrobin)"), out
    why = lines_of(out)
    assert why["s2"].startswith("not eligible: draining (admin)"), out
    assert why["s3"].startswith("not eligible: maint (admin)"), out
    assert why["s4"].startswith("backup: used only when no primary"), out
    assert why["s6"].startswith("not eligible: down"), out
    assert "[FAULT delay]" in why["s1"], out
    assert why["s5"].startswith("full: 1/1 sessions (maxconn)"), out
    assert re.search(r"^pick: app/s1$", out, re.M), out
    for c in held:
        c.close()

    # roundrobin: the next connection goes where explain said.
    for _ in range(3):
        out = ctl(sock, "explain", "127.0.0.1")
        picked = re.search(r"^pick: app/(\S+)", out, re.M).group(1)
        c = peers.connect(sh.addr)
        c.sendall(b"ping")
        c.shutdown(socket.SHUT_WR)
        peers.read_all(c)
        c.close()
        sh.wait_for(lambda: re.search(
            r"picked app/%s by roundrobin" % picked, sh.log()), timeout=5,
            what="the debug line of the pick of " + picked)

    # errors
    r = subprocess.run([SHOALCTL, "-s", sock, "explain", "not-an-ip"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "bad client address" in r.stdout, r
    r = subprocess.run([SHOALCTL, "-s", sock, "explain", "10.0.0.1",
                        "nope"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "unknown frontend" in r.stdout, r


def test_explain_source_matches_the_real_pick(start_peer, start_shoal,
                                              tmp_path):
    """balance = source: explain names the ring owner of 127.0.0.1, and
    every connection from 127.0.0.1 goes there."""
    ps = [start_peer("echo", name="s%d" % i) for i in range(1, 5)]
    sock = str(tmp_path / "admin.sock")
    port = alloc_port()
    text = ("[global]\nthreads = 2\n[frontend web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nbalance = source\n%s"
            "[admin]\nsocket = %s\n" % (port, "".join(
                "server = s%d %s\n" % (i + 1, p.addr)
                for i, p in enumerate(ps)), sock))
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    out = ctl(sock, "explain", "127.0.0.1", "web")
    owner = re.search(r"^pick: app/(\S+)", out, re.M).group(1)
    assert "hash ring" in out
    for k, v in lines_of(out).items():
        if k != owner:
            assert v.startswith("eligible: not the ring owner"), out
    for _ in range(5):
        c = peers.connect(sh.addr)
        c.sendall(b"x")
        c.shutdown(socket.SHUT_WR)
        peers.read_all(c)
        c.close()
    sh.wait_sessions(5)
    assert {x["server"] for x in sh.sessions()} == {"app/" + owner}


def test_report_is_markdown_with_its_tables(start_peer, start_shoal,
                                            tmp_path):
    s1 = start_peer("echo", name="s1")
    s2 = start_peer("echo", name="s2")
    sock = str(tmp_path / "admin.sock")
    port = alloc_port()
    text = ("[global]\nthreads = 1\n[frontend web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nserver = s1 %s\n"
            "server = s2 %s\n[admin]\nsocket = %s\n"
            % (port, s1.addr, s2.addr, sock))
    start_shoal(config_text=text, binds=["127.0.0.1:%d" % port])
    admin(sock, "set server app/s2 state drain")
    md = ctl(sock, "report")
    assert md.startswith("# shoal report: ")
    html = markdown.markdown(md, extensions=["tables"])
    tables = re.findall(r"<table>.*?</table>", html, re.S)
    # info, app's servers, events (no announcement: no table)
    assert len(tables) == 3, html
    info, servers, events = tables
    assert "No announced server." in html
    assert "<td>version</td>" in info
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>", servers, re.S)
    assert rows == ["s1", "s2"], servers
    assert "drain" in servers
    assert "admin" in events and "set server app/s2 state drain" in events
    assert "<h2>Discovery</h2>" in html and "Datagrams by verdict" in html
