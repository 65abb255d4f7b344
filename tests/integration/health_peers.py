#!/usr/bin/python3
"""
health_peers.py - the servers that health-check tests point shoal at.

    python3 health_peers.py KIND --port P [--host H] [--name N] [options]

Like peers.py: one peer per process (so a test can kill -9 it or run it in
a network namespace), "READY <port>" once listening, then one JSON event per
line on stdout. One thread, one selector: thousands of short check
connections cost nothing and leave no thread behind.

Kinds:
  http     read the request head (up to 4 KiB), answer
           "HTTP/1.1 <status> ..." and close. The status is re-read from
           --status-file for every request (default --status, 200); event
           "req" with the status, the request line and headers
  script   like http, but the status of the k-th connection is taken from
           --pattern (cycled): '1' = 200, '0' = 500; event "req" with k
  line     read one line; answer --reply if it equals --expect, else
           --wrong; with --banner, write it on accept and do not wait for a
           line (server speaks first); event "line"
  silent   accept, read and discard, never answer; close on EOF or error
  rst      accept and reset at once (SO_LINGER {1, 0}); event "rst"
"""

import argparse
import os
import selectors
import signal
import time

from peers import emit, listen_socket, ready, rst_close


def unescape(s):
    return s.encode().decode("unicode_escape").encode("latin-1")


class Server:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.count = 0
        ls = listen_socket(args.host, args.port)
        ls.setblocking(False)
        self.ls = ls
        self.sel.register(ls, selectors.EVENT_READ, None)
        ready(ls.getsockname()[1])

    def status(self, k):
        a = self.args
        if a.kind == "script":
            p = a.pattern
            return 200 if p[(k - 1) % len(p)] == "1" else 500
        if a.status_file:
            try:
                with open(a.status_file) as f:
                    return int(f.read().strip() or a.status)
            except (OSError, ValueError):
                return a.status
        return a.status

    def accept(self):
        for _ in range(64):
            try:
                c, _ = self.ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.count += 1
            k = self.count
            kind = self.args.kind
            if kind == "rst":
                rst_close(c)
                emit({"ev": "rst", "n": k, "t": time.time()})
                continue
            c.setblocking(False)
            if kind == "line" and self.args.banner is not None:
                self.reply(c, unescape(self.args.banner))
                emit({"ev": "line", "n": k, "banner": True,
                      "t": time.time()})
                continue
            self.sel.register(c, selectors.EVENT_READ,
                              {"n": k, "buf": b""})

    def reply(self, c, data):
        try:
            c.send(data)
        except OSError:
            pass
        try:
            c.close()
        except OSError:
            pass

    def readable(self, c, st):
        try:
            b = c.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            b = b""
        if not b:
            self.sel.unregister(c)
            c.close()
            return
        kind = self.args.kind
        if kind == "silent":
            return
        st["buf"] += b
        buf = st["buf"]
        if kind in ("http", "script"):
            if b"\r\n\r\n" not in buf and len(buf) < 4096:
                return
            self.sel.unregister(c)
            code = self.status(st["n"])
            head = buf.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            lines = head.split("\r\n")
            self.reply(c, ("HTTP/1.1 %d %s\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n"
                           % (code, "OK" if code < 400 else "Error")
                           ).encode())
            emit({"ev": "req", "n": st["n"], "status": code,
                  "line": lines[0], "headers": lines[1:],
                  "t": time.time()})
        elif kind == "line":
            if b"\n" not in buf and len(buf) < 4096:
                return
            self.sel.unregister(c)
            line = buf.split(b"\n", 1)[0].rstrip(b"\r")
            good = line == unescape(self.args.expect)
            self.reply(c, unescape(self.args.reply if good
                                   else self.args.wrong))
            emit({"ev": "line", "n": st["n"], "good": good,
                  "t": time.time()})

    def run(self):
        while True:
            for key, _ in self.sel.select(1.0):
                if key.data is None:
                    self.accept()
                else:
                    self.readable(key.fileobj, key.data)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["http", "script", "line", "silent",
                                     "rst"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default=None)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--status-file", default=None)
    ap.add_argument("--pattern", default="1")
    ap.add_argument("--expect", default="PING")
    ap.add_argument("--reply", default="+PONG\\r\\n")
    ap.add_argument("--wrong", default="-ERR unknown command\\r\\n")
    ap.add_argument("--banner", default=None)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    try:
        Server(args).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
