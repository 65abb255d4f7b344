#!/usr/bin/python3
"""
clientcost.py - what client-identity features cost per `Connection: close`
session, shoal against HAProxy doing the same, in the same run.

  shoal-plain       shoal, one thread, no feature
  shoal-acl1000     + `allow` with 1 000 networks (the clients' 127.0.0.0/8
                    among them), checked on every accept
  haproxy-plain     HAProxy mode tcp, nbthread 1
  haproxy-acl1000   + `tcp-request connection reject unless { src -f
                    LIST }` with the same 1 000 networks
  shoal-sendv2      shoal, `send_proxy = v2`
  haproxy-sendv2    HAProxy, `server ... send-proxy-v2`
  shoal-tls         shoal relaying HTTPS (to nginx's `ssl` port)
  shoal-sni         + three `route` lines, the ClientHello read and routed
  haproxy-tls       HAProxy mode tcp relaying HTTPS
  haproxy-sni       + `tcp-request inspect-delay` / `req_ssl_sni` routing

Each target relays to one nginx on loopback (`return 200`; the send-v2
targets to its `listen ... proxy_protocol` port); wrk with
`Connection: close`, 50 connections, runs on CPU 0 with nginx, the proxy
alone on CPU 1. Rounds are interleaved (A B C D A B C D ...); per target the
median of requests/s and of the proxy's own CPU time per session
(user+sys from /proc/PID/stat divided by requests).

  base-plain        with --base PATH: shoal-plain run by another build (the
                    one before a change), to measure what the change
                    costs per session

Usage: bench/probes/clientcost.py [--shoal PATH] [--base PATH] [--reps N]
                                  [--duration S]
                                  [--only plain,acl1000,sendv2,tls,sni]
Every process it starts is killed at the end.
"""

import argparse
import ipaddress
import os
import random
import re
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from measure import median, proc_cpu                 # noqa: E402
from restarts import free_port, wait_port            # noqa: E402
from procs import Procs                              # noqa: E402


def networks(n, seed=1):
    """n distinct networks (prefixes /16 to /28 in 10/8, 172.16/12 and
    fd00::/8), the clients' 127.0.0.0/8 in the middle."""
    rnd = random.Random(seed)
    out = set()
    while len(out) < n - 1:
        if rnd.random() < 0.8:
            pfx = rnd.randint(16, 28)
            a = ipaddress.ip_address(rnd.choice([0x0a000000, 0xac100000]) |
                                     rnd.getrandbits(20))
            out.add(str(ipaddress.ip_network("%s/%d" % (a, pfx),
                                              strict=False)))
        else:
            a = ipaddress.ip_address((0xfd << 120) | rnd.getrandbits(120))
            out.add(str(ipaddress.ip_network("%s/%d" % (a, 64),
                                              strict=False)))
    nets = sorted(out)
    nets.insert(len(nets) // 2, "127.0.0.0/8")
    return nets


class Bench(Procs):
    def __init__(self, d, shoal, bport, pport, sport, base=None):
        super().__init__(d, cpu="1")    # every proxy alone on CPU 1
        self.d, self.shoal, self.bport, self.pport = d, shoal, bport, pport
        self.base = base
        self.sport = sport
        self.nets = networks(1000)
        with open(os.path.join(d, "nets.txt"), "w") as f:
            f.write("\n".join(self.nets) + "\n")

    def shoal_target(self, name, extra, be_extra="", binary=None):
        port = free_port()
        path = os.path.join(self.d, name + ".ini")
        with open(path, "w") as f:
            f.write("[global]\nthreads = 1\nlog_level = warn\n"
                    "[frontend web]\nbind = 127.0.0.1:%d\nbackend = app\n%s"
                    "[backend app]\ncheck = none\nserver = s1 127.0.0.1:%d\n"
                    "%s" % (port, extra, self.sport if name in (
                        "shoal-tls", "shoal-sni") else self.pport if
                        be_extra else self.bport, be_extra))
        p = self.spawn([binary or self.shoal, "-c", path])
        wait_port(port)
        return port, p.pid

    def haproxy_target(self, name, extra, srv_opt="", tls=False):
        port = free_port()
        path = os.path.join(self.d, name + ".cfg")
        with open(path, "w") as f:
            f.write("global\n  nbthread 1\ndefaults\n  mode tcp\n"
                    "  timeout connect 2s\n  timeout client 60s\n"
                    "  timeout server 60s\nfrontend f\n  bind 127.0.0.1:%d\n"
                    "%s  default_backend b\nbackend b\n"
                    "  server s1 127.0.0.1:%d %s\n" % (
                        port, extra, self.sport if tls else self.pport if
                        srv_opt else self.bport, srv_opt))
        p = self.spawn(["haproxy", "-db", "-f", path])
        wait_port(port)
        return port, p.pid

    def targets(self):
        acl = "".join("allow = %s\n" % n for n in self.nets)
        lst = os.path.join(self.d, "nets.txt")
        base = {"base-plain": self.shoal_target("base-plain", "", "",
                                                self.base)} \
            if self.base else {}
        return {
            "shoal-plain": self.shoal_target("shoal-plain", ""),
            **base,
            "shoal-acl1000": self.shoal_target("shoal-acl1000", acl),
            "haproxy-plain": self.haproxy_target("haproxy-plain", ""),
            "haproxy-acl1000": self.haproxy_target(
                "haproxy-acl1000", "  tcp-request connection reject unless "
                "{ src -f %s }\n" % lst),
            "shoal-sendv2": self.shoal_target("shoal-sendv2", "",
                                              "send_proxy = v2\n"),
            "haproxy-sendv2": self.haproxy_target("haproxy-sendv2", "",
                                                  "send-proxy-v2"),
            "shoal-tls": self.tls_target("shoal-tls", False),
            "shoal-sni": self.tls_target("shoal-sni", True),
            "haproxy-tls": self.tls_target("haproxy-tls", False, True),
            "haproxy-sni": self.tls_target("haproxy-sni", True, True),
        }

    def tls_target(self, name, sni, haproxy=False):
        """HTTPS through the proxy to nginx's ssl port; with sni, the
        client's name (localhost) is matched against three routes."""
        if not haproxy:
            fe = ("route = a.test app\nroute = *.b.test app\n"
                  "route = localhost app\n" if sni else "")
            port, pid = self.shoal_target(name, fe, "")
            return port, pid
        extra = ("  tcp-request inspect-delay 5s\n"
                 "  tcp-request content accept if { req_ssl_hello_type 1 }\n"
                 "  use_backend b if { req_ssl_sni -i a.test }\n"
                 "  use_backend b if { req_ssl_sni -m end .b.test }\n"
                 "  use_backend b if { req_ssl_sni -i localhost }\n"
                 if sni else "")
        return self.haproxy_target(name, extra, "", tls=True)


def wrk_close(port, duration, tls=False):
    url = ("https://localhost:%d/" if tls else "http://127.0.0.1:%d/") % port
    cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c50", "-d%ds" % duration,
           "-H", "Connection: close", url]
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=duration + 30).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build", "shoal"))
    ap.add_argument("--base", help="another shoal build, run as base-plain")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--only", help="features to measure, e.g. tls,sni "
                    "(default: all)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="shoal-clientcost-")
    bport, pport, sport = free_port(), free_port(), free_port()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    os.path.join(d, "k.pem"), "-out", os.path.join(d, "c.pem"),
                    "-days", "2", "-subj", "/CN=localhost"], check=True,
                   capture_output=True)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write("worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/err;\n"
                "events { worker_connections 4096; }\nhttp { access_log off;"
                " server { listen 127.0.0.1:%d; listen 127.0.0.1:%d "
                "proxy_protocol; listen 127.0.0.1:%d ssl; ssl_certificate "
                "%s/c.pem; ssl_certificate_key %s/k.pem; location / { "
                "return 200 \"hello\\n\"; } } }\n"
                % (d, d, bport, pport, sport, d, d))
    ng = subprocess.Popen(["taskset", "-c", "0", "nginx", "-p", d, "-c",
                           os.path.join(d, "nginx.conf"), "-g",
                           "daemon off;"], start_new_session=True)
    b = Bench(d, a.shoal, bport, pport, sport, a.base)
    res = {}
    try:
        wait_port(bport)
        targets = b.targets()
        if a.only:
            want = a.only.split(",")
            targets = {k: v for k, v in targets.items()
                       if k.split("-", 1)[1] in want}
        for rep in range(a.reps):
            for name, (port, pid) in targets.items():
                c0 = proc_cpu(pid)
                out = wrk_close(port, a.duration,
                                tls=name.endswith(("-tls", "-sni")))
                c1 = proc_cpu(pid)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                err = re.search(r"Socket errors.*|Non-2xx.*", out)
                row = (n / a.duration, (c1 - c0) * 1e6 / n)
                res.setdefault(name, []).append(row)
                print("%-16s rep %d: %6.0f req/s  proxy %5.1f us/session %s"
                      % ((name, rep) + row + (err.group(0) if err else "",)),
                      flush=True)
    finally:
        b.cleanup()
        os.killpg(ng.pid, signal.SIGTERM)
        ng.wait(10)
    med = {k: (median(r[0] for r in v), median(r[1] for r in v))
           for k, v in res.items()}
    print("\n| target | req/s | proxy CPU µs/session | vs its plain |")
    print("| --- | --- | --- | --- |")
    for k, (rps, us) in med.items():
        base = med.get(("shoal" if k == "base-plain" else k.split("-")[0]) +
                       ("-tls" if k.endswith("-sni") else "-plain"),
                       (0, us))[1]
        print("| %s | %.0f | %.1f | %+.1f %% |" % (k, rps, us,
                                                 (us / base - 1) * 100))
    if "base-plain" in med and "shoal-plain" in med:
        print("shoal/base CPU per session, plain: %.3f" % (
            med["shoal-plain"][1] / med["base-plain"][1]))
    for feat in ("acl1000", "sendv2", "tls", "sni"):
        if "shoal-" + feat not in med or "haproxy-" + feat not in med:
            continue
        s, h = med["shoal-" + feat][1], med["haproxy-" + feat][1]
        print("shoal/HAProxy CPU per session, %s: %.2f" % (feat, s / h))


if __name__ == "__main__":
    sys.exit(main())
