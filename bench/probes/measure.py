#!/usr/bin/python3
"""measure.py - interleaved wrk keep-alive runs against relays that are
already running; prints requests/s, the relay's own CPU per request
(user+sys from /proc/PID/stat) and the whole machine's CPU per request
(/proc/stat). Used for the sockmap probe (docs/benchmarks.md).

  bench/probes/measure.py '{"NAME": [PORT, PID], ...}' REPS [close]

wrk runs on CPU 0 with 50 connections for 5 s on /tiny. `bench/run
--serve SECONDS` starts the backends, shoal and HAProxy and prints their
ports and pids; the probe is started by hand.
"""

import json
import os
import re
import subprocess
import sys

CLK = os.sysconf("SC_CLK_TCK")
DURATION = 5


def proc_cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def machine_cpu():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return (sum(v) - v[3] - v[4]) / CLK      # all but idle and iowait


def wrk(port, close):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c50", "-d%ds" % DURATION,
           "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("http://127.0.0.1:%d/tiny" % port)
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=DURATION + 30).stdout


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    targets = json.loads(sys.argv[1])
    reps = int(sys.argv[2])
    close = len(sys.argv) > 3
    res = {k: [] for k in targets}
    for rep in range(reps):
        for name, (port, pid) in targets.items():
            c0, m0 = proc_cpu(pid), machine_cpu()
            out = wrk(port, close)
            c1, m1 = proc_cpu(pid), machine_cpu()
            n = int(re.search(r"(\d+) requests in", out).group(1))
            p99 = re.search(r"99%\s+(\S+)", out).group(1)
            err = re.search(r"Socket errors.*|Non-2xx.*", out)
            row = (n / DURATION, (c1 - c0) * 1e6 / n, (m1 - m0) * 1e6 / n)
            res[name].append(row)
            print("%-8s rep %d: %6.0f req/s  relay %5.1f us/req  machine "
                  "%5.1f us/req  p99 %s %s" % (
                      (name, rep) + row + (p99, err.group(0) if err else "")),
                  flush=True)
    for name, rows in res.items():
        print("median %-8s %6.0f req/s  relay %5.1f us/req  machine %5.1f "
              "us/req" % (name, median(r[0] for r in rows),
                          median(r[1] for r in rows),
                          median(r[2] for r in rows)))


if __name__ == "__main__":
    main()
