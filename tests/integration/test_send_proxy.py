"""
test_send_proxy.py - shoal sends the PROXY protocol header to its servers
(`[backend] send_proxy = v1 | v2`, per server `send_proxy=`), and its
health checks send one too (`check_send_proxy = yes`).

The receivers are software nobody here wrote: nginx (`listen ...
proxy_protocol`, answering `$proxy_protocol_addr $proxy_protocol_port`)
and HAProxy (`bind ... accept-proxy`, answering `%[src] %[src_port]`).
Each answer must name the real client's address and port, for IPv4 and
IPv6 clients, with v1 and v2; through two shoals (send -> accept -> send)
the client survives both hops.
"""

import os
import socket
import subprocess

import pytest

import peers
from conftest import SLACK, alloc_port, wait_for

HAPROXY = "/usr/sbin/haproxy"
NGINX = "/usr/sbin/nginx"


def listening(host, port):
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


class Receivers:
    """nginx and HAProxy, each listening with the PROXY protocol on
    127.0.0.1 and answering HTTP with the client they were told of."""

    def __init__(self, d):
        self.d = d
        self.procs = []

    def nginx(self):
        port = alloc_port()
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("worker_processes 1;\npid %s/nginx.pid;\n"
                    "error_log %s/nginx.err;\n"
                    "events { worker_connections 256; }\n"
                    "http { access_log off;\n"
                    "  client_body_temp_path %s; proxy_temp_path %s;\n"
                    "  fastcgi_temp_path %s; uwsgi_temp_path %s;\n"
                    "  scgi_temp_path %s;\n"
                    "  server { listen 127.0.0.1:%d proxy_protocol;\n"
                    "    location / { return 200 \"nginx "
                    "$proxy_protocol_addr $proxy_protocol_port\\n\"; } } }\n"
                    % ((self.d,) * 7 + (port,)))
        self.procs.append(subprocess.Popen(
            [NGINX, "-p", self.d, "-c", conf, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        wait_for(lambda: listening("127.0.0.1", port), 10 * SLACK,
                 what="nginx")
        return port

    def haproxy(self):
        port = alloc_port()
        conf = os.path.join(self.d, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write("defaults\n  mode http\n  timeout connect 2s\n"
                    "  timeout client 10s\n  timeout server 10s\n"
                    "frontend f\n  bind 127.0.0.1:%d accept-proxy\n"
                    "  http-request return status 200 content-type "
                    "text/plain lf-string \"haproxy %%[src] %%[src_port]\\n\""
                    "\n" % port)
        self.procs.append(subprocess.Popen(
            [HAPROXY, "-db", "-f", conf], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: listening("127.0.0.1", port), 10 * SLACK,
                 what="haproxy")
        return port

    def stop(self):
        for p in self.procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def receivers(tmp_path):
    r = Receivers(str(tmp_path))
    yield r
    r.stop()


def ask(addr, bind):
    """An HTTP GET from bind to addr: (the answer's body line, the client's
    own (address, port))."""
    s = peers.connect(addr, bind=bind, timeout=5 * SLACK)
    try:
        me = s.getsockname()[:2]
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = peers.recv_all(s).decode(errors="replace")
    finally:
        s.close()
    assert data.startswith("HTTP/1."), data
    return data.split("\r\n\r\n", 1)[1].strip(), me


def shoal_config(binds, server, backend_extra=(), frontend_extra=()):
    lines = ["[global]", "threads = 2", "grace = 2s", "",
             "[frontend web]"] + ["bind = %s" % b for b in binds]
    lines += ["backend = app"] + list(frontend_extra)
    lines += ["", "[backend app]", "timeout_connect = 1s", "retries = 1",
              "server = %s" % server] + list(backend_extra)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("receiver", ["nginx", "haproxy"])
def test_receiver_sees_the_client(start_shoal, receivers, version, receiver):
    """send_proxy = v1 / v2: nginx and HAProxy behind shoal name the real
    client's address and port, for clients on 127.0.0.2, 127.0.0.3 and
    ::1 (the IPv6 client over an IPv6 listener, to an IPv4 server)."""
    rport = getattr(receivers, receiver)()
    port = alloc_port()
    binds = ["127.0.0.1:%d" % port, "[::1]:%d" % port]
    start_shoal(config_text=shoal_config(
        binds, "r 127.0.0.1:%d" % rport, ["send_proxy = %s" % version]),
        binds=binds)
    for bind, host in (("127.0.0.2", "127.0.0.1"), ("127.0.0.3",
                       "127.0.0.1"), ("::1", "::1")):
        body, me = ask((host, port), bind)
        assert body == "%s %s %d" % (receiver, me[0], me[1]), (body, me)


def test_per_server_setting_and_retry_to_a_plain_server(start_shoal,
                                                        receivers,
                                                        start_peer):
    """A server line's send_proxy= overrides the backend's: with
    `send_proxy = v2` on the backend, a server with send_proxy=none gets
    the client's bytes untouched (an echo server returns exactly them),
    while nginx gets its header."""
    rport = receivers.nginx()
    echo = start_peer("echo")
    port = alloc_port()
    binds = ["127.0.0.1:%d" % port]
    sh = start_shoal(config_text=shoal_config(
        binds, "n 127.0.0.1:%d" % rport,
        ["send_proxy = v2", "server = e %s send_proxy=none" % echo.addr,
         "balance = roundrobin"]), binds=binds)
    seen = set()
    for _ in range(4):
        s = peers.connect(sh.addr, bind="127.0.0.2", timeout=5 * SLACK)
        me = s.getsockname()
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = peers.recv_all(s)
        s.close()
        if data.startswith(b"GET"):
            assert data == b"GET / HTTP/1.0\r\n\r\n"
            seen.add("echo")
        else:
            assert data.endswith(("nginx 127.0.0.2 %d\n" % me[1]).encode())
            seen.add("nginx")
    assert seen == {"echo", "nginx"}


def test_two_shoals_keep_the_client(start_shoal, receivers):
    """Client -> shoal A (send_proxy = v2) -> shoal B (accept_proxy from A,
    send_proxy = v1) -> nginx: nginx names the original client, not A or
    B; B's session log does too."""
    rport = receivers.nginx()
    pb = alloc_port()
    b = start_shoal(config_text=shoal_config(
        ["127.0.0.1:%d" % pb], "n 127.0.0.1:%d" % rport,
        ["send_proxy = v1"], ["accept_proxy = yes",
                              "accept_proxy_from = 127.0.0.1"]),
        binds=["127.0.0.1:%d" % pb])
    pa = alloc_port()
    start_shoal(config_text=shoal_config(
        ["127.0.0.1:%d" % pa], "b 127.0.0.1:%d" % pb, ["send_proxy = v2"]),
        binds=["127.0.0.1:%d" % pa])
    body, me = ask(("127.0.0.1", pa), "127.0.0.7")
    assert body == "nginx 127.0.0.7 %d" % me[1]
    b.wait_sessions(1, pred=lambda x: x["client"] == "127.0.0.7:%d" % me[1])


def test_check_send_proxy_keeps_an_accept_proxy_server_up(start_shoal,
                                                          receivers):
    """HAProxy with accept-proxy refuses a connection without the header:
    an HTTP check without check_send_proxy fails and the server goes down;
    with check_send_proxy = yes a server that starts down passes `rise`
    checks in a row, comes up and serves."""
    rport = receivers.haproxy()
    common = ["send_proxy = v2", "check = http", "check_interval = 100ms",
              "check_timeout = 500ms"]
    port = alloc_port()
    sh = start_shoal(config_text=shoal_config(
        ["127.0.0.1:%d" % port], "h 127.0.0.1:%d" % rport,
        common + ["fall = 1"]), binds=["127.0.0.1:%d" % port])
    sh.wait_for(lambda: any("server app/h: up -> down" in m
                            for _, _, m in sh.log_lines()),
                what="the check fails without a header")
    port2 = alloc_port()
    sh2 = start_shoal(config_text=shoal_config(
        ["127.0.0.1:%d" % port2], "h 127.0.0.1:%d init_state=down" % rport,
        common + ["rise = 3", "check_send_proxy = yes"]),
        binds=["127.0.0.1:%d" % port2])
    sh2.wait_for(lambda: any("server app/h: down -> up" in m
                             for _, _, m in sh2.log_lines()),
                 what="three checks with a header pass")
    body, me = ask(("127.0.0.1", port2), "127.0.0.2")
    assert body == "haproxy 127.0.0.2 %d" % me[1]


REPLICA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "..", "dist", "lab", "replica.sh")


@pytest.fixture
def lab_app():
    """The lab's Node.js web app (dist/lab/webapp/app) with
    PROXY_PROTOCOL=1 on 127.0.0.1: its port."""
    d = subprocess.run(["sh", REPLICA, "app-dir"], capture_output=True,
                       text=True, timeout=300, check=True).stdout.strip()
    port = alloc_port()
    p = subprocess.Popen(["node", os.path.join(d, "app.js")],
                         env=dict(os.environ, PORT=str(port),
                                  PROXY_PROTOCOL="1", TAG="pp"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening("127.0.0.1", port), 20 * SLACK,
                 what="the web app")
        yield port
    finally:
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_lab_web_app_sees_the_client(start_shoal, lab_app, version):
    """The lab guide's recipe: the web app with PROXY_PROTOCOL=1 behind
    shoal with send_proxy and check_send_proxy (HTTP checks on /healthz
    pass through the header): its JSON answer's `client` is the real
    client (127.0.0.5, ::1), not the balancer."""
    import json
    port = alloc_port()
    binds = ["127.0.0.1:%d" % port, "[::1]:%d" % port]
    sh = start_shoal(config_text=shoal_config(
        binds, "node1 127.0.0.1:%d init_state=down" % lab_app,
        ["send_proxy = %s" % version, "check_send_proxy = yes",
         "check = http", "check_http = GET /healthz", "rise = 1",
         "check_interval = 200ms"]), binds=binds)
    sh.wait_for(lambda: any("node1: down -> up" in m
                            for _, _, m in sh.log_lines()),
                timeout=10, what="the app's check passes with a header")
    for bind, host in (("127.0.0.5", "127.0.0.1"), ("::1", "::1")):
        body, me = ask((host, port), bind)
        answer = json.loads(body)
        assert answer["client"] == bind and answer["tag"] == "pp", answer
