"""
test_valgrind.py - shoal under valgrind memcheck: relay traffic, failover,
timeouts and a graceful stop, then no error and no leak. Run against the
normal build only (tests/run.sh leaves it out of the sanitizer pass:
valgrind cannot run ASan binaries).
"""
import pytest

import peers as P

VALGRIND = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--track-fds=no"]


@pytest.mark.valgrind
def test_memcheck_clean(start_shoal, start_peer):
    a = start_peer("echo", name="e1")
    b = start_peer("echo", name="e2")
    dead = "dead 127.0.0.1:1"          # refused: exercises retries
    sh = start_shoal(servers=[a, b, dead], prefix=VALGRIND,
                     backend={"timeout_connect": "2s"}, wait=False)
    sh.wait_ready(timeout=60)
    for i, size in enumerate((0, 1, 65537, 1 << 20)):
        r = P.exchange(sh.addr, size, seed=i)
        assert r["tx_sha"] == r["rx_sha"] and r["rx_len"] == size, r
    sh.wait_sessions(4, timeout=30)
    rc = sh.stop(timeout=60)
    assert rc == 0, sh.log()[-4000:]
    assert "ERROR SUMMARY" not in sh.log() or \
        "ERROR SUMMARY: 0 errors" in sh.log(), sh.log()[-4000:]
    assert "definitely lost" not in sh.log(), sh.log()[-4000:]


@pytest.mark.valgrind
def test_memcheck_clean_with_client_identity(start_shoal, start_peer):
    """accept_proxy (a good v1 and v2 header, a bad one, a stalled one),
    allow/deny, per-source limits and send_proxy = v2 to an echo server
    that returns the header: no memcheck error, no leak; a reload swaps
    the policy (the old one is freed once unused)."""
    import socket
    e = start_peer("echo", name="e1")
    sh = start_shoal(servers=[e], prefix=VALGRIND, wait=False,
                     frontend={"accept_proxy": True,
                               "accept_proxy_from": "127.0.0.0/8",
                               "timeout_proxy": "1s",
                               "allow": "127.0.0.0/8 10.0.0.0/8",
                               "deny": "10.9.9.9",
                               "maxconn_per_source": 4,
                               "rate_per_source": "100/s"},
                     backend={"send_proxy": "v2",
                              "timeout_connect": "2s"})
    sh.wait_ready(timeout=60)
    v2 = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" +
          socket.inet_aton("10.1.2.3") + socket.inet_aton("10.0.0.1") +
          b"\x04\xd2\x00\x50")
    for hdr in (b"PROXY TCP4 10.1.2.3 10.0.0.1 1234 80\r\n", v2):
        s = P.connect(sh.addr, timeout=30)
        s.sendall(hdr + b"ping")
        s.shutdown(socket.SHUT_WR)
        got = P.recv_all(s)
        s.close()
        assert got.endswith(b"ping") and len(got) > 4, got
    for bad in (b"PROXY TCP4 10.9.9.9 10.0.0.1 1 2\r\n", b"GARBAGE\r\n\r\n",
                b"PROXY TCP4 10.1"):
        s = P.connect(sh.addr, timeout=30)
        s.sendall(bad)
        s.settimeout(30)
        try:
            s.recv(10)
        except OSError:
            pass
        s.close()
    sh.wait_sessions(5, timeout=60)
    text = open(sh.conf_path).read().replace("deny = 10.9.9.9",
                                             "deny = 10.9.9.8")
    with open(sh.conf_path, "w") as f:
        f.write(text)
    sh.send_signal(1)
    sh.wait_for(lambda: any(m.startswith("reload done")
                            for _, _, m in sh.log_lines()), timeout=30)
    rc = sh.stop(timeout=60)
    assert rc == 0, sh.log()[-4000:]
    assert "ERROR SUMMARY" not in sh.log() or \
        "ERROR SUMMARY: 0 errors" in sh.log(), sh.log()[-4000:]
    assert "definitely lost" not in sh.log(), sh.log()[-4000:]


@pytest.mark.valgrind
def test_memcheck_clean_with_tls(start_shoal, start_peer, tmp_path):
    """TLS termination and origination in one process (a Python ssl client
    -> shoal under memcheck -> a second shoal terminating -> echo), a
    client that fails its handshake, a reload that swaps the certificate:
    no memcheck error, no leak."""
    import socket
    import ssl
    from test_tls import CA, config
    from conftest import alloc_port
    d = tmp_path / "ca"
    d.mkdir()
    ca = CA(str(d))
    inner_pem, pem, pem2 = (ca.issue("x.test", ["x.test"]) for _ in range(3))
    e = start_peer("echo", name="e1")
    ip, isp = alloc_port(), alloc_port()
    inner = start_shoal(config_text=config(
        ip, isp, ["tls = yes", "cert = " + inner_pem],
        {"app": ["server = e " + e.addr]}), binds=["127.0.0.1:%d" % ip])
    port, sp = alloc_port(), alloc_port()
    sh = start_shoal(config_text=config(
        port, sp, ["tls = yes", "cert = " + pem, "timeout_handshake = 2s"],
        {"app": ["tls = yes", "tls_verify = " + ca.pem, "tls_sni = x.test",
                 "server = i 127.0.0.1:%d" % ip]}),
        binds=["127.0.0.1:%d" % port], prefix=VALGRIND, wait=False)
    sh.wait_ready(timeout=60)
    ctx = ssl.create_default_context(cafile=ca.pem)
    for i, size in enumerate((1, 65537, 200000)):
        with ctx.wrap_socket(P.connect(sh.addr, timeout=60),
                             server_hostname="x.test") as s:
            data = P.stream_bytes(i, size)
            s.sendall(data)
            got = b""
            while len(got) < size:
                got += s.recv(65536)
            assert got == data
    bad = P.connect(sh.addr, timeout=30)
    bad.sendall(b"GET / HTTP/1.0\r\n\r\n")
    bad.settimeout(30)
    try:
        bad.recv(10)
    except OSError:
        pass
    bad.close()
    sh.wait_sessions(4, timeout=60)
    text = open(sh.conf_path).read().replace(pem, pem2)
    with open(sh.conf_path, "w") as f:
        f.write(text)
    sh.send_signal(1)
    sh.wait_for(lambda: any(m.startswith("reload done")
                            for _, _, m in sh.log_lines()), timeout=30)
    with ctx.wrap_socket(P.connect(sh.addr, timeout=60),
                         server_hostname="x.test") as s:
        s.sendall(b"again")
        assert s.recv(10) == b"again"
    rc = sh.stop(timeout=60)
    assert rc == 0, sh.log()[-4000:]
    assert "ERROR SUMMARY" not in sh.log() or \
        "ERROR SUMMARY: 0 errors" in sh.log(), sh.log()[-4000:]
    assert "definitely lost" not in sh.log(), sh.log()[-4000:]
    del inner


@pytest.mark.valgrind
def test_memcheck_clean_with_elastic_pools(start_shoal, start_peer,
                                           tmp_path):
    """slowstart, scale conditions with a hook that runs (its output read
    and logged), fault injection, explain, show events and report over the
    admin socket, the stats documents with latency and scale sections:
    no memcheck error, no leak."""
    from conftest import alloc_port
    from test_admin import admin
    e1 = start_peer("echo", name="e1")
    e2 = start_peer("echo", name="e2")
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\necho hook $1 $SHOAL_BACKEND\nexit 3\n")
    hook.chmod(0o755)
    sock = str(tmp_path / "admin.sock")
    port, sp = alloc_port(), alloc_port()
    text = ("[global]\nthreads = 2\n[frontend web]\nbind = 127.0.0.1:%d\n"
            "backend = app\n[backend app]\nslowstart = 3s\n"
            "scale_up = up_servers < 5 for 1s\nscale_cooldown = 1s\n"
            "scale_hook = %s\nserver = e1 %s\nserver = e2 %s\n"
            "[stats]\nbind = 127.0.0.1:%d\n[admin]\nsocket = %s\n"
            % (port, hook, e1.addr, e2.addr, sp, sock))
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % port],
                     prefix=VALGRIND, wait=False)
    sh.wait_ready(timeout=60)
    admin(sock, "set server app/e1 fault delay 20ms")
    for i, size in enumerate((1, 65537)):
        r = P.exchange(sh.addr, size, seed=i)
        assert r["tx_sha"] == r["rx_sha"] and r["rx_len"] == size, r
    admin(sock, "set server app/e2 fault reset")
    r = P.exchange(sh.addr, 100, seed=5)
    assert r["rx_len"] == 100
    admin(sock, "set server app/e2 fault none")
    sh.wait_for(lambda: "scale hook: hook up app" in sh.log(), timeout=60,
                what="the hook's output")
    for line in ("explain 10.0.0.1", "show events", "report",
                 "show servers", "show stat json"):
        assert not admin(sock, line).startswith("error"), line
    import urllib.request
    for path in ("/", "/stats.json", "/metrics"):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (sp, path),
                                    timeout=30) as f:
            assert f.status == 200
    rc = sh.stop(timeout=60)
    assert rc == 0, sh.log()[-4000:]
    assert "ERROR SUMMARY" not in sh.log() or \
        "ERROR SUMMARY: 0 errors" in sh.log(), sh.log()[-4000:]
    assert "definitely lost" not in sh.log(), sh.log()[-4000:]
