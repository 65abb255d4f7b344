"""
test_tls.py - TLS termination (`[frontend] tls = yes`, `cert`, `tls_min`,
`alpn`, `timeout_handshake`) and origination (`[backend] tls = yes`,
`tls_verify`, `tls_sni`, `tls_cert`), with certificates from a test CA
made here by `openssl ca`.

Real peers only: curl, `openssl s_client` / `s_server`, wrk over https,
HAProxy as a TLS server behind shoal, Python's ssl for the ClientHello
split into 1-byte segments, and a second shoal: plain client -> shoal
(origination) -> shoal (termination) -> echo, for 64 MiB each way with
checksums and both half-closes (close_notify) crossing the TLS hop.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

import peers
from conftest import SLACK, alloc_port, run_shoal_check, wait_for
from test_sni import listening

HAPROXY = "/usr/sbin/haproxy"
CA_CNF = """[ca]
default_ca = c
[c]
database = {d}/index.txt
new_certs_dir = {d}
serial = {d}/serial
default_md = sha256
policy = p
unique_subject = no
copy_extensions = none
[p]
commonName = supplied
organizationName = optional
"""


class CA:
    """A test CA; issue() makes leaf PEMs (chain + key in one file)."""

    def __init__(self, d):
        self.d = d
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(d, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(d=d))
        self.key = os.path.join(d, "ca.key")
        self.pem = os.path.join(d, "ca.pem")
        self._run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                   "-out", self.pem, "-days", "3", "-subj", "/CN=shoal test CA",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign"])
        self.n = 0

    @staticmethod
    def _run(args):
        subprocess.run(args, check=True, capture_output=True, timeout=60)

    def issue(self, cn, names, org="shoal", expired=False, rsa=False):
        self.n += 1
        base = os.path.join(self.d, "leaf%d" % self.n)
        key = ["-newkey", "rsa:2048"] if rsa else \
            ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        self._run(["openssl", "req", "-new"] + key +
                  ["-nodes", "-keyout", base + ".key", "-out", base + ".csr",
                   "-subj", "/O=%s/CN=%s" % (org, cn)])
        with open(base + ".ext", "w") as f:
            f.write("subjectAltName=" + ",".join("DNS:" + n for n in names)
                    + "\n")
        dates = ["-startdate", "20200101000000Z", "-enddate",
                 "20200201000000Z"] if expired else ["-days", "2"]
        self._run(["openssl", "ca", "-batch", "-notext", "-config", self.cnf,
                   "-cert", self.pem, "-keyfile", self.key, "-in",
                   base + ".csr", "-out", base + ".crt", "-extfile",
                   base + ".ext"] + dates)
        pem = base + ".pem"
        with open(pem, "w") as f:
            f.write(open(base + ".crt").read() + open(base + ".key").read())
        self.last_crt, self.last_key = base + ".crt", base + ".key"
        return pem


@pytest.fixture
def ca(tmp_path):
    d = tmp_path / "ca"
    d.mkdir()
    return CA(str(d))


def stats(sh):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats.json"
                                % sh.stats_port, timeout=5) as r:
        return json.load(r)


def metrics(sh):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics"
                                % sh.stats_port, timeout=5) as r:
        return r.read().decode()


def fe_tls(sh, i=0):
    return stats(sh)["frontends"][i]["tls"]


def config(port, stats_port, fe, backends, default="app", glob=()):
    lines = ["[global]", "threads = 2", "grace = 2s"] + list(glob)
    lines += ["", "[frontend web]", "bind = 127.0.0.1:%d" % port,
              "backend = %s" % default, "timeout_client = 20s"] + list(fe)
    for name, body in backends.items():
        lines += ["", "[backend %s]" % name, "timeout_connect = 2s",
                  "timeout_server = 20s", "retries = 0"] + list(body)
    lines += ["", "[stats]", "bind = 127.0.0.1:%d" % stats_port]
    return "\n".join(lines) + "\n"


def start(start_shoal, fe, backends, **kw):
    port, sp = alloc_port(), alloc_port()
    sh = start_shoal(config_text=config(port, sp, fe, backends, **kw),
                     binds=["127.0.0.1:%d" % port])
    sh.stats_port = sp
    return sh


def curl(sh, name, path="/", extra=(), ca_file=None):
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--resolve",
         "%s:%d:127.0.0.1" % (name, sh.port)] +
        (["--cacert", ca_file] if ca_file else []) + list(extra) +
        ["https://%s:%d%s" % (name, sh.port, path)],
        capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def s_client(port, sni=None, extra=(), data="", timeout=20):
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
    args += ["-servername", sni] if sni else ["-noservername"]
    r = subprocess.run(args + list(extra), input=data, capture_output=True,
                       text=True, timeout=timeout)
    return r.stdout + r.stderr


def subject_cn(out):
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN = ", 1)[1].split(",")[0].strip()
    return None


@pytest.fixture
def procs():
    made = []
    yield made
    for p in made:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def s_server(procs, pem_crt, pem_key, extra=()):
    port = alloc_port()
    procs.append(subprocess.Popen(
        ["openssl", "s_server", "-quiet", "-www", "-accept", str(port),
         "-cert", pem_crt, "-key", pem_key] + list(extra),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL))
    wait_for(lambda: listening(port), 10 * SLACK, 0.05, what="s_server")
    return port


# --------------------------------------------------------------------------
# Termination

def test_terminates_for_curl_and_wrk(ca, http_backends, start_shoal):
    """curl (verifying against the test CA) reaches the plain backend
    through shoal; ALPN picks http/1.1 from the offered list; the session
    line carries the TLS version, SNI and ALPN; wrk over https runs
    without an error; the handshakes show in /stats.json and /metrics."""
    pem = ca.issue("web.test", ["web.test"])
    sh = start(start_shoal, ["tls = yes", "cert = " + pem,
                             "alpn = h2,http/1.1"],
               {"app": ["server = %s %s" % http_backends[0]]})
    rc, out, err = curl(sh, "web.test", ca_file=ca.pem, extra=["--http1.1"])
    assert rc == 0, err
    assert http_backends[0][0] in out
    sh.wait_sessions(1)
    line = sh.sessions()[-1]
    assert line["tls"] == "1.3" and line["sni"] == "web.test"
    assert line["alpn"] == "http/1.1" and line["term"] == "--"
    r = subprocess.run(["wrk", "-t1", "-c8", "-d2s", "--timeout", "5s",
                        "https://127.0.0.1:%d/" % sh.port],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    m = re.search(r"(\d+) requests in", r.stdout)
    assert m and int(m.group(1)) > 50, r.stdout
    assert "Socket errors" not in r.stdout, r.stdout
    t = fe_tls(sh)
    assert t["handshakes"] >= 9 and t["versions"]["1.3"] == t["handshakes"]
    assert sum(v for k, v in t["failures"].items() if k != "closed") == 0
    assert 'shoal_frontend_tls_handshakes_total{frontend="web"} %d' \
        % t["handshakes"] in metrics(sh)


def test_certificate_by_sni_and_versions(ca, http_backends, start_shoal):
    """Two certificates: each name gets its own (exact and wildcard), an
    unknown or missing SNI the first one; tls_min = 1.3 refuses a TLS 1.2
    client (counted as version) while 1.3 clients go on."""
    a = ca.issue("a.test", ["a.test"], org="first")
    b = ca.issue("b.test", ["*.b.test"], org="second")
    sh = start(start_shoal, ["tls = yes", "cert = " + a, "cert = " + b,
                             "tls_min = 1.3"],
               {"app": ["server = %s %s" % http_backends[0]]})
    assert subject_cn(s_client(sh.port, "a.test")) == "a.test"
    assert subject_cn(s_client(sh.port, "x.b.test")) == "b.test"
    assert subject_cn(s_client(sh.port, "nope.test")) == "a.test"
    assert subject_cn(s_client(sh.port, None)) == "a.test"
    out = s_client(sh.port, "a.test", extra=["-tls1_2"])
    assert subject_cn(out) is None
    wait_for(lambda: fe_tls(sh)["failures"]["version"] == 1, 5 * SLACK)
    assert fe_tls(sh)["handshakes"] == 4


def test_bad_clients_are_counted_and_cost_nothing(ca, http_backends,
                                                   start_shoal):
    """Plain HTTP on the TLS port (not_tls), a client that does not trust
    the certificate (its alert), a client that stalls mid-handshake
    (timeout_handshake: cH), one that closes mid-handshake (closed): each
    is counted by reason, no server is touched, and a good client is
    served all along."""
    pem = ca.issue("web.test", ["web.test"])
    sh = start(start_shoal, ["tls = yes", "cert = " + pem,
                             "timeout_handshake = 1s"],
               {"app": ["server = %s %s" % http_backends[0]]})
    r = subprocess.run(["curl", "-sS", "--max-time", "5",
                        "http://127.0.0.1:%d/" % sh.port],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    rc, _, err = curl(sh, "web.test")          # no --cacert: refuses us
    assert rc != 0 and "certificate" in err
    stall = socket.create_connection(sh.addr)
    stall.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    quitter = socket.create_connection(sh.addr)
    quitter.sendall(b"\x16\x03\x01\x02\x00\x01")
    quitter.close()
    rc, out, err = curl(sh, "web.test", ca_file=ca.pem)
    assert rc == 0, err
    stall.settimeout(10)
    t0 = time.monotonic()
    assert stall.recv(100) == b""              # closed at the deadline
    assert time.monotonic() - t0 < 3
    stall.close()
    wait_for(lambda: fe_tls(sh)["failures"]["timeout"] == 1, 5 * SLACK)
    f = fe_tls(sh)["failures"]
    assert f["not_tls"] == 1 and f["alert"] == 1 and f["closed"] == 1, f
    terms = [s["term"] for s in sh.sessions()]
    assert terms.count("CH") == 3 and terms.count("cH") == 1, terms
    assert sum(1 for s in sh.sessions() if s["server"] != "app/-") == 1


class Splitter(threading.Thread):
    """Forwards one connection to target, the client's bytes one per
    segment (TCP_NODELAY), the server's as they come."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.target = target

    def run(self):
        c, _ = self.ls.accept()
        s = socket.create_connection(self.target)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def back():
            while True:
                d = s.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        threading.Thread(target=back, daemon=True).start()
        while True:
            d = c.recv(65536)
            if not d:
                break
            for i in range(len(d)):
                s.send(d[i:i + 1])
        s.shutdown(socket.SHUT_WR)


def test_16k_client_hello_in_1_byte_segments(ca, http_backends,
                                              start_shoal):
    """A ClientHello of over 16 KiB (a long ALPN list), each byte its own
    TCP segment: the handshake completes and the request is served."""
    pem = ca.issue("web.test", ["web.test"])
    sh = start(start_shoal, ["tls = yes", "cert = " + pem,
                             "alpn = http/1.1"],
               {"app": ["server = %s %s" % http_backends[0]]})
    sp = Splitter(sh.addr)
    sp.start()
    ctx = ssl.create_default_context(cafile=ca.pem)
    ctx.set_alpn_protocols(["p%03d" % i + "x" * 240 for i in range(66)] +
                           ["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", sp.port), timeout=60)
    with ctx.wrap_socket(raw, server_hostname="web.test") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(b"GET / HTTP/1.0\r\nHost: web.test\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    assert b"200" in data.split(b"\r\n")[0]
    assert fe_tls(sh)["handshakes"] == 1


def test_resumption_across_workers_and_key_rotation(ca, http_backends,
                                                    start_shoal, tmp_path):
    """Tickets resume on any worker (one key ring for all: TLS 1.2 tickets
    with s_client -reconnect, a TLS 1.3 ticket kept in a file); with
    tls_ticket_rotate = 2s a ticket is good for one to two periods, then
    the handshake is a full one again. The resumption rate shows."""
    pem = ca.issue("web.test", ["web.test"])
    sh = start(start_shoal, ["tls = yes", "cert = " + pem],
               {"app": ["server = %s %s" % http_backends[0]]},
               glob=["tls_ticket_rotate = 2s"])
    out = s_client(sh.port, "web.test", extra=["-reconnect", "-tls1_2"],
                   timeout=30)
    assert out.count("Reused, TLSv1.2") >= 4, out[-2000:]
    sess = str(tmp_path / "sess.pem")
    s_client(sh.port, "web.test", extra=["-sess_out", sess, "-ign_eof"],
             data="GET / HTTP/1.0\r\n\r\n")
    t0 = time.monotonic()
    assert "Reused, TLSv1.3" in s_client(sh.port, "web.test",
                                         extra=["-sess_in", sess])

    def expired():
        return "Reused" not in s_client(sh.port, "web.test",
                                        extra=["-sess_in", sess])
    wait_for(expired, 10 * SLACK, 0.3, what="ticket expiry")
    assert time.monotonic() - t0 >= 1.5
    t = fe_tls(sh)
    assert t["resumed"] >= 5 and 0 < t["resumption_rate"] < 1


def test_tickets_off(ca, http_backends, start_shoal):
    """tls_tickets = no: no ticket is issued, every handshake is full."""
    pem = ca.issue("web.test", ["web.test"])
    sh = start(start_shoal, ["tls = yes", "cert = " + pem,
                             "tls_tickets = no"],
               {"app": ["server = %s %s" % http_backends[0]]})
    out = s_client(sh.port, "web.test", extra=["-reconnect", "-tls1_2"],
                   timeout=30)
    assert out.count("New, TLSv1.2") == 6 and "Reused" not in out, out
    assert "TLS session ticket:" not in out
    t = fe_tls(sh)
    assert t["resumed"] == 0 and t["versions"]["1.2"] == 6


def test_reload_swaps_certificates_all_or_nothing(ca, http_backends,
                                                  start_shoal):
    """A reload takes a renewed certificate for new clients while a
    session on the old one goes on; a reload naming a bad file is refused
    (FILE:LINE of the cert line) and the current certificate stays."""
    old = ca.issue("web.test", ["web.test"], org="old")
    new = ca.issue("web.test", ["web.test"], org="new")
    sh = start(start_shoal, ["tls = yes", "cert = " + old],
               {"app": ["server = %s %s" % http_backends[0]]})
    ctx = ssl.create_default_context(cafile=ca.pem)
    held = ctx.wrap_socket(socket.create_connection(sh.addr, timeout=10),
                           server_hostname="web.test")
    assert "O = old" in s_client(sh.port, "web.test")
    text = open(sh.conf_path).read()
    with open(sh.conf_path, "w") as f:
        f.write(text.replace(old, new))
    sh.send_signal(signal.SIGHUP)
    wait_for(lambda: "O = new" in s_client(sh.port, "web.test"), 5 * SLACK)
    held.sendall(b"GET / HTTP/1.0\r\n\r\n")
    got = b""
    while True:
        d = held.recv(65536)
        if not d:
            break
        got += d
    assert b" 200 " in got.split(b"\r\n")[0]
    held.close()
    bad = old + ".missing"
    with open(sh.conf_path, "w") as f:
        f.write(text.replace(old, bad))
    sh.send_signal(signal.SIGHUP)
    line = text.splitlines().index("cert = " + old) + 1
    wait_for(lambda: any("reload refused" in m and
                         ":%d: frontend web: %s: cannot open" % (line, bad)
                         in m for _, _, m in sh.log_lines()), 5 * SLACK)
    assert "O = new" in s_client(sh.port, "web.test")
    sh.expect_errors = True


# --------------------------------------------------------------------------
# Origination, and both at once

def two_shoals(start_shoal, ca, target, fe_extra=(), be_extra=()):
    """client -> A (plain in, TLS out) -> B (TLS in, plain out) -> target."""
    pem = ca.issue("inner.test", ["inner.test"])
    b = start(start_shoal, ["tls = yes", "cert = " + pem],
              {"app": ["server = t %s" % target]})
    a = start(start_shoal, list(fe_extra),
              {"app": ["tls = yes", "tls_verify = " + ca.pem,
                       "tls_sni = inner.test",
                       "server = b 127.0.0.1:%d" % b.port] + list(be_extra)})
    return a, b


def test_64mib_each_way_and_half_close_across_tls(ca, start_peer,
                                                  start_shoal):
    """64 MiB each way through a TLS hop made of two shoals (origination
    then termination), checksummed; the client's SHUT_WR crosses the hop
    as close_notify and reaches the echo server as a FIN while the other
    direction keeps flowing; the echo's FIN comes back the same way."""
    echo = start_peer("echo")
    a, b = two_shoals(start_shoal, ca, echo.addr)
    size = 64 << 20
    res = peers.exchange(a.addr, size, seed=7, timeout=120)
    assert res["tx_err"] is None and res["rx_err"] is None, res
    assert res["tx_len"] == size and res["rx_len"] == size
    assert res["rx_sha"] == peers.stream_digest(7, size)
    a.wait_sessions(1)
    b.wait_sessions(1)
    la, lb = a.sessions()[-1], b.sessions()[-1]
    assert la["term"] == "--" and lb["term"] == "--", (la, lb)
    assert la["srv_tls"] == "1.3" and lb["tls"] == "1.3"
    assert stats(a)["backends"][0]["tls"]["handshakes"] == 1
    hc = start_peer("halfclose", "--size", str(1 << 20), "--seed", "3")
    a2, _ = two_shoals(start_shoal, ca, hc.addr)
    s = peers.connect(a2.addr)
    n, sha, err = peers.read_all(s)             # server: data, then FIN
    assert (n, sha, err) == (1 << 20, peers.stream_digest(3, 1 << 20), None)
    peers.send_seeded(s, 4, 1 << 20)            # client goes on after it
    s.shutdown(socket.SHUT_WR)
    ev = hc.wait_events("conn", timeout=20)[0]
    assert ev["rx_len"] == 1 << 20, ev
    assert ev["rx_sha"] == peers.stream_digest(4, 1 << 20)
    s.close()


@pytest.fixture
def haproxy_tls(tmp_path, procs):
    def make(pem):
        port = alloc_port()
        cfg = ["global", "  log stderr format raw local0 info",
               "defaults", "  mode http", "  timeout connect 2s",
               "  timeout client 10s", "  timeout server 10s",
               "frontend fe", "  bind 127.0.0.1:%d ssl crt %s" % (port, pem),
               "  http-request return status 200 content-type text/plain "
               "string haproxy-tls"]
        path = str(tmp_path / ("haproxy-%d.cfg" % port))
        with open(path, "w") as f:
            f.write("\n".join(cfg) + "\n")
        procs.append(subprocess.Popen([HAPROXY, "-db", "-f", path],
                                      stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_for(lambda: listening(port), 10 * SLACK, 0.05, what="haproxy")
        return port
    return make


def test_origination_to_haproxy_verifies_and_checks(ca, haproxy_tls,
                                                    start_shoal):
    """HAProxy terminates TLS behind shoal: with the right name curl gets
    its answer through shoal, later connections resume HAProxy's session,
    and `check = http` runs over TLS with the backend's settings (L7OK). A server whose certificate does not verify
    (wrong name, or expired) is refused (SH, counted as verify) and goes
    down under the same checks; tls_verify = none accepts it."""
    good = haproxy_tls(ca.issue("srv.test", ["srv.test"]))
    expired = haproxy_tls(ca.issue("srv.test", ["srv.test"], expired=True))
    common = ["tls = yes", "tls_sni = srv.test", "check = http",
              "check_interval = 200ms", "rise = 1", "fall = 1"]
    sh = start(start_shoal, [], {
        "app": common + ["tls_verify = " + ca.pem,
                         "server = h 127.0.0.1:%d" % good]})
    wait_for(lambda: stats(sh)["backends"][0]["servers"][0]["check"]["result"]
             == "L7OK", 5 * SLACK)
    r = subprocess.run(["curl", "-sS", "--max-time", "5",
                        "http://127.0.0.1:%d/" % sh.port],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "haproxy-tls", r.stderr
    sh.wait_sessions(1)
    assert sh.sessions()[-1]["srv_tls"] == "1.3"
    for _ in range(3):          # the server's tickets are offered back
        r = subprocess.run(["curl", "-sS", "--max-time", "5",
                            "http://127.0.0.1:%d/" % sh.port],
                           capture_output=True, text=True, timeout=20)
        assert r.stdout == "haproxy-tls", r.stderr
    t = stats(sh)["backends"][0]["tls"]
    assert t["resumed"] >= 2 and t["handshakes"] >= 4, t
    for port, sni in ((good, "other.test"), (expired, "srv.test")):
        sh2 = start(start_shoal, [], {
            "app": ["tls = yes", "tls_sni = " + sni, "tls_verify = " + ca.pem,
                    "server = h 127.0.0.1:%d" % port]})
        r = subprocess.run(["curl", "-sS", "--max-time", "5",
                            "http://127.0.0.1:%d/" % sh2.port],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0 and r.stdout == ""
        sh2.wait_sessions(1)
        assert sh2.sessions()[-1]["term"] == "SH"
        assert stats(sh2)["backends"][0]["tls"]["failures"]["verify"] == 1
    sh3 = start(start_shoal, [], {
        "app": common + ["tls_verify = " + ca.pem,
                         "server = h 127.0.0.1:%d" % expired]})
    wait_for(lambda: stats(sh3)["backends"][0]["servers"][0]["state"]
             == "down", 5 * SLACK)
    assert "verify" in stats(sh3)["backends"][0]["servers"][0]["check"][
        "detail"]
    sh4 = start(start_shoal, [], {
        "app": ["tls = yes", "tls_verify = none",
                "server = h 127.0.0.1:%d" % expired]})
    r = subprocess.run(["curl", "-sS", "--max-time", "5",
                        "http://127.0.0.1:%d/" % sh4.port],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "haproxy-tls"


def test_client_certificate_and_client_sni(ca, procs, start_shoal):
    """A server that requires a client certificate (s_server -Verify)
    accepts shoal with tls_cert and refuses it without (its alert ends the
    session: in TLS 1.3 it comes after the client's handshake);
    with no tls_sni, a terminating shoal passes on the client's own SNI
    (the server's certificate for that name verifies)."""
    srv = ca.issue("api.test", ["api.test"])
    port = s_server(procs, ca.last_crt, ca.last_key,
                    ["-Verify", "1", "-CAfile", ca.pem])
    cli = ca.issue("shoal-client", ["shoal-client"])
    front = ca.issue("api.test", ["api.test"])
    sh = start(start_shoal, ["tls = yes", "cert = " + front], {
        "app": ["tls = yes", "tls_verify = " + ca.pem, "tls_cert = " + cli,
                "server = s 127.0.0.1:%d" % port]})
    rc, out, err = curl(sh, "api.test", ca_file=ca.pem)
    assert rc == 0 and "s_server" in out, err
    sh2 = start(start_shoal, [], {
        "app": ["tls = yes", "tls_verify = " + ca.pem, "tls_sni = api.test",
                "server = s 127.0.0.1:%d" % port]})
    r = subprocess.run(["curl", "-sS", "--max-time", "5",
                        "http://127.0.0.1:%d/" % sh2.port],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == ""
    # TLS 1.3: the server judges the client's certificate after the
    # client's handshake is over; its alert ends the session (SD).
    sh2.wait_sessions(1)
    assert sh2.sessions()[-1]["term"] == "SD"
    del srv


def test_no_memory_growth_per_handshake(ca, start_peer, start_shoal):
    """Two thousand full handshakes after a warm-up leave shoal's RSS
    where it was (within 2 MiB; under ASan, whose quarantine holds freed
    memory, LeakSanitizer checks at exit instead)."""
    pem = ca.issue("web.test", ["web.test"])
    echo = start_peer("echo")
    sh = start(start_shoal, ["tls = yes", "cert = " + pem],
               {"app": ["server = e " + echo.addr]})

    def burst(n):
        ctx = ssl.create_default_context(cafile=ca.pem)
        for _ in range(n):
            with ctx.wrap_socket(socket.create_connection(sh.addr),
                                 server_hostname="web.test") as s:
                s.sendall(b"x")
                assert s.recv(1) == b"x"
    burst(300)
    wait_for(lambda: stats(sh)["frontends"][0]["sessions_active"] == 0,
             5 * SLACK)
    rss0 = sh.rss_kb()
    burst(2000)
    wait_for(lambda: stats(sh)["frontends"][0]["sessions_active"] == 0,
             5 * SLACK)
    if not sh.is_asan():    # there, LeakSanitizer judges at exit
        assert sh.rss_kb() - rss0 < 2048, (rss0, sh.rss_kb())
    assert fe_tls(sh)["handshakes"] >= 2300


# --------------------------------------------------------------------------
# Configuration

CONF_ERRORS = [
    (["tls = yes"], [], "tls = yes needs at least one cert"),
    (["cert = /nonexistent.pem"], [], "cert without tls = yes"),
    (["tls = yes", "cert = /nonexistent.pem"], [],
     "/nonexistent.pem: cannot open"),
    (["tls = yes", "cert = @EXPIRED@"], [], "certificate expired"),
    (["tls = yes", "cert = @GOOD@", "tls_min = 1.1"], [], "bad tls_min"),
    ([], ["tls = yes"], "tls = yes needs tls_verify"),
    ([], ["tls_sni = x.test"], "tls_sni without tls = yes"),
    ([], ["tls = yes", "tls_verify = /nonexistent-ca.pem"],
     "cannot load CA bundle"),
    ([], ["tls = yes", "tls_verify = none", "check_ca_file = /x"],
     "checks use tls_verify"),
]


@pytest.mark.parametrize("fe,be,msg", CONF_ERRORS)
def test_config_errors_name_file_and_line(ca, tmp_path, fe, be, msg):
    """`shoal -t` refuses each with FILE:LINE: and the reason (a bad or
    expired certificate is found at -t, not at the first client)."""
    good = ca.issue("g.test", ["g.test"])
    expired = ca.issue("e.test", ["e.test"], expired=True)
    fe = [x.replace("@GOOD@", good).replace("@EXPIRED@", expired)
          for x in fe]
    path = str(tmp_path / "bad.ini")
    with open(path, "w") as f:
        f.write(config(alloc_port(), alloc_port(), fe,
                       {"app": ["server = s 127.0.0.1:9"] + be}))
    rc, out = run_shoal_check(path)
    assert rc == 1
    assert re.match(re.escape(path) + r":\d+: ", out), out
    assert msg in out, out
