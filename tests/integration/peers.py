#!/usr/bin/python3
"""
peers.py - the harness peers of shoal's integration tests.

Run as a subprocess, one peer per process, so that a test can kill -9 it,
SIGSTOP it or run it inside a network namespace:

    python3 peers.py KIND --port P [--host H] [options]

Server kinds listen on H:P (P = 0 picks a free port) and print
"READY <port>" once listening. Client kinds connect to H:P and print
"READY 0" once their set-up is done. After that, every line on stdout is one
JSON object ("event"); per-connection results use ev = "conn". Each server
handles any number of concurrent connections (one thread each). Every peer
exits on SIGTERM.

Server kinds:
  echo       echo everything; on EOF: SHUT_WR, close
  source     write --size bytes of the seeded stream (--seed; after
             --delay seconds), then log event "sent"; optional
             --rst-after K: abort with an RST (SO_LINGER {1,0}) after K bytes;
             otherwise SHUT_WR, read (and count) until EOF, close
  sink       read until EOF or error, log length and SHA-256; then optionally
             write --reply-size bytes of the stream --reply-seed, close;
             --rst-after K: abort with an RST after reading K bytes
  banner     write --banner on accept, then echo
  tag        write "NAME\\n" (--name); with --close close at once, otherwise
             read until EOF (holding the connection), then close
  rst        the rst-er: abort with an RST (SO_LINGER {1,0}) after sending
             (with --size) or after reading --rst-after bytes (default 0:
             at once)
  halfclose  write --size bytes of stream --seed, SHUT_WR, keep reading until
             EOF (logged like sink), close

Client kinds (H:P is the target):
  holder     open --count connections that send nothing; log each close
             (EOF or error) with the time it took; --bind SRC
  client     --count sequential connections: --mode tag (read until EOF,
             report the first line) | exchange (send --size seeded bytes,
             SHUT_WR, read everything back) | connect (connect, close);
             reports connect/first-byte/total times per connection
  slowreader small SO_RCVBUF (--rcvbuf), read --rate bytes/s for --slow-for
             seconds (event "fast" when done), then read at full speed to EOF
  trickle    send 1 byte every --interval s for --duration s, reading the
             echo, then SHUT_WR and read to EOF

The seeded stream: the concatenation of random.Random(seed).randbytes(1 MiB)
chunks, truncated to the wanted size, so a shorter stream is always a prefix
of a longer one with the same seed. The module also offers client helpers for
the test process (exchange, download, upload, read_tag, ...).
"""

import argparse
import errno
import functools
import hashlib
import json
import os
import random
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time

CHUNK = 1 << 20
RECV_BUF = 256 * 1024


# --------------------------------------------------------------------------
# The seeded stream and digests

def seeded_chunks(seed, size, chunk=CHUNK):
    """Yield the seeded stream of `size` bytes in pieces of at most 1 MiB."""
    r = random.Random(seed)
    left = size
    while left > 0:
        b = r.randbytes(CHUNK)
        if left < CHUNK:
            b = b[:left]
        yield b
        left -= len(b)


@functools.lru_cache(maxsize=64)
def stream_digest(seed, size):
    """SHA-256 hex digest of the first `size` bytes of stream `seed`."""
    h = hashlib.sha256()
    for b in seeded_chunks(seed, size):
        h.update(b)
    return h.hexdigest()


def range_digest(seed, start, end):
    """SHA-256 hex digest of bytes [start, end) of stream `seed`."""
    h = hashlib.sha256()
    pos = 0
    for b in seeded_chunks(seed, end):
        lo = max(start - pos, 0)
        if lo < len(b):
            h.update(b[lo:])
        pos += len(b)
    return h.hexdigest()


def stream_bytes(seed, size):
    return b"".join(seeded_chunks(seed, size))


def errname(e):
    """A short name for a socket exception: ECONNRESET, EPIPE, TIMEOUT..."""
    if isinstance(e, TimeoutError) and not e.errno:
        return "TIMEOUT"
    if getattr(e, "errno", None):
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def fmt_addr(sa):
    host, port = sa[0], sa[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# --------------------------------------------------------------------------
# Socket helpers (used by the peers and by the test process)

def connect(addr, bind=None, timeout=10.0, rcvbuf=None, sndbuf=None):
    """Connected TCP socket to addr=(host, port), optionally from `bind`."""
    host, port = addr
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if bind:
            s.bind((bind, 0))
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def rst_close(s):
    """Close with SO_LINGER {1, 0}: the kernel sends an RST."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def read_all(s, h=None, limit=None):
    """Read until EOF or error (or `limit` bytes).

    Returns (length, sha256 hex, error name or None)."""
    h = h or hashlib.sha256()
    buf = bytearray(RECV_BUF)
    mv = memoryview(buf)
    n = 0
    err = None
    try:
        while limit is None or n < limit:
            want = RECV_BUF if limit is None else min(RECV_BUF, limit - n)
            k = s.recv_into(mv[:want])
            if k == 0:
                break
            h.update(mv[:k])
            n += k
    except OSError as e:
        err = errname(e)
    return n, h.hexdigest(), err


def send_seeded(s, seed, size, h=None, limit=None, pace=None):
    """Send the first `size` bytes of stream `seed` (stopping after `limit`).

    pace = (bytes, seconds) sends in slices with pauses in between.
    Returns (length sent, sha256 hex of what was sent, error or None)."""
    h = h or hashlib.sha256()
    n = 0
    err = None
    stop = size if limit is None else min(size, limit)
    try:
        for b in seeded_chunks(seed, stop):
            if pace:
                step, gap = pace
                for i in range(0, len(b), step):
                    piece = b[i:i + step]
                    s.sendall(piece)
                    h.update(piece)
                    n += len(piece)
                    time.sleep(gap)
            else:
                s.sendall(b)
                h.update(b)
                n += len(b)
    except OSError as e:
        err = errname(e)
    return n, h.hexdigest(), err


def exchange(addr, size, seed, bind=None, timeout=60.0, shut=True):
    """Send `size` seeded bytes (then SHUT_WR) while reading everything back.

    Returns a dict: tx_len, tx_sha, tx_err, rx_len, rx_sha, rx_err, elapsed."""
    t0 = time.monotonic()
    s = connect(addr, bind=bind, timeout=timeout)
    try:
        res = exchange_sock(s, size, seed, timeout=timeout, shut=shut)
    finally:
        s.close()
    res["elapsed"] = time.monotonic() - t0
    return res


def exchange_sock(s, size, seed, timeout=60.0, shut=True):
    """exchange() on an already connected socket (left open)."""
    s.settimeout(timeout)
    res = {}

    def sender():
        n, sha, err = send_seeded(s, seed, size)
        if err is None and shut:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err = errname(e)
        res.update(tx_len=n, tx_sha=sha, tx_err=err)

    local = fmt_addr(s.getsockname())
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    n, sha, err = read_all(s)
    t.join(timeout)
    res.update(rx_len=n, rx_sha=sha, rx_err=err, local=local)
    return res


def download(addr, request=b"", bind=None, timeout=60.0, shut=False):
    """Connect, send `request`, optionally SHUT_WR, read until EOF.

    Returns (length, sha256 hex, error or None)."""
    s = connect(addr, bind=bind, timeout=timeout)
    try:
        if request:
            s.sendall(request)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)
    finally:
        s.close()


def upload(addr, size, seed, bind=None, timeout=60.0):
    """Send `size` seeded bytes, SHUT_WR, read the reply until EOF.

    Returns a dict like exchange()."""
    return exchange(addr, size, seed, bind=bind, timeout=timeout)


def recv_all(s, chunk=65536):
    """Everything s sends until EOF, as bytes (errors propagate)."""
    parts = []
    while True:
        b = s.recv(chunk)
        if not b:
            return b"".join(parts)
        parts.append(b)


def echo_once(addr, size=64, timeout=5.0):
    """One short exchange (through shoal to an echo backend): None if all
    bytes came back, else an error string."""
    data = os.urandom(size)
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except OSError as e:
        return "connect: %s" % e
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        return None if got == data else "got %d of %d bytes" % (
            len(got), size)
    except OSError as e:
        return "io: %s" % e
    finally:
        s.close()


class ClientLoop:
    """Sequential echo_once() exchanges in a thread, at most `limit`.
    `lock` is held during each connection, so a caller can kill a backend
    *between* two connections (a kill -9 cannot be survived by the
    connection it cuts). results: [(start, duration, error or None)]."""

    def __init__(self, addr, gap=0.01, limit=20000, timeout=5.0):
        self.addr = addr
        self.gap = gap
        self.limit = limit
        self.timeout = timeout
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.results = []
        self.t = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.t.start()
        return self

    def run(self):
        for _ in range(self.limit):
            if self.stop_ev.is_set():
                break
            with self.lock:
                t0 = time.time()
                err = echo_once(self.addr, timeout=self.timeout)
                self.results.append((t0, time.time() - t0, err))
            time.sleep(self.gap)

    def stop(self):
        self.stop_ev.set()
        self.t.join(30)
        assert not self.t.is_alive(), "client loop did not stop"

    def failures(self):
        return [(t, e) for t, _, e in self.results if e is not None]


def read_tag(addr, bind=None, timeout=10.0):
    """Connect, read until EOF, return the first line (the server's name)."""
    s = connect(addr, bind=bind, timeout=timeout)
    try:
        data = recv_all(s)
        return data.decode(errors="replace").split("\n", 1)[0]
    finally:
        s.close()


def read_line(s, timeout=10.0):
    """Read one line (up to \\n) from s without reading past it much."""
    s.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        data += b
    return data.decode(errors="replace").rstrip("\n")


def open_tagged(addr, bind=None, timeout=10.0):
    """Open a connection to a (non --close) tag server, return (sock, tag)."""
    s = connect(addr, bind=bind, timeout=timeout)
    return s, read_line(s, timeout)


# --------------------------------------------------------------------------
# Peer process plumbing

_out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj, sort_keys=True)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def ready(port):
    with _out_lock:
        sys.stdout.write("READY %d\n" % port)
        sys.stdout.flush()


def on_sigterm(signum, frame):
    try:
        sys.stdout.flush()
    finally:
        os._exit(0)


def listen_socket(host, port):
    """A listening TCP socket on host:port (IPv6 sockets v6-only)."""
    fam = family_of(host)
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    ls.bind((host, port))
    ls.listen(1024)
    return ls


def serve(args, handler):
    ls = listen_socket(args.host, args.port)
    ready(ls.getsockname()[1])
    ids = iter(range(1, 1 << 62))
    while True:
        c, a = ls.accept()
        cid = next(ids)
        t = threading.Thread(target=run_conn, args=(args, handler, c, a, cid),
                             daemon=True)
        t.start()


def run_conn(args, handler, c, a, cid):
    peer = fmt_addr(a)
    t0 = time.monotonic()
    emit({"ev": "accept", "id": cid, "peer": peer, "kind": args.kind,
          "name": args.name})
    res = {"ev": "conn", "id": cid, "peer": peer, "kind": args.kind,
           "name": args.name}
    try:
        res.update(handler(args, c) or {})
    except Exception as e:  # a peer never dies because of one connection
        res["exc"] = "%s: %s" % (type(e).__name__, e)
    finally:
        try:
            c.close()
        except OSError:
            pass
    res["elapsed"] = round(time.monotonic() - t0, 4)
    emit(res)


def shut_wr(c):
    try:
        c.shutdown(socket.SHUT_WR)
        return None
    except OSError as e:
        return errname(e)


# --------------------------------------------------------------------------
# Server kinds

def h_echo(args, c):
    hr = hashlib.sha256()
    buf = bytearray(RECV_BUF)
    mv = memoryview(buf)
    n = 0
    rx_err = tx_err = None
    while True:
        try:
            k = c.recv_into(buf)
        except OSError as e:
            rx_err = errname(e)
            break
        if k == 0:
            break
        hr.update(mv[:k])
        n += k
        try:
            c.sendall(mv[:k])
        except OSError as e:
            tx_err = errname(e)
            break
    if rx_err is None and tx_err is None:
        tx_err = shut_wr(c)
    return {"rx_len": n, "rx_sha": hr.hexdigest(), "rx_err": rx_err,
            "tx_len": n, "tx_err": tx_err}


def h_source(args, c):
    limit = args.rst_after if args.rst_after is not None else None
    if args.delay:
        time.sleep(args.delay)
    n, sha, err = send_seeded(c, args.seed, args.size, limit=limit)
    emit({"ev": "sent", "tx_len": n, "tx_err": err, "name": args.name})
    res = {"tx_len": n, "tx_sha": sha, "tx_err": err}
    if args.rst_after is not None and err is None:
        rst_close(c)
        res["rst"] = True
        return res
    if err is None:
        res["tx_err"] = shut_wr(c)
    rn, rsha, rerr = read_all(c)
    res.update(rx_len=rn, rx_sha=rsha, rx_err=rerr)
    return res


def h_sink(args, c):
    limit = args.rst_after
    n, sha, err = read_all(c, limit=limit)
    res = {"rx_len": n, "rx_sha": sha, "rx_err": err}
    if limit is not None and n >= limit:
        rst_close(c)
        res["rst"] = True
        return res
    if err is None and args.reply_size:
        tn, tsha, terr = send_seeded(c, args.reply_seed, args.reply_size)
        res.update(tx_len=tn, tx_sha=tsha, tx_err=terr)
    return res


def h_banner(args, c):
    banner = args.banner.encode()
    try:
        c.sendall(banner)
    except OSError as e:
        return {"tx_err": errname(e)}
    return h_echo(args, c)


def h_tag(args, c):
    try:
        c.sendall(args.name.encode() + b"\n")
    except OSError as e:
        return {"tx_err": errname(e)}
    if args.close:
        return {}
    n, sha, err = read_all(c)
    return {"rx_len": n, "rx_err": err}


def h_halfclose(args, c):
    n, sha, err = send_seeded(c, args.seed, args.size)
    res = {"tx_len": n, "tx_sha": sha, "tx_err": err or shut_wr(c),
           "shut_wr_at": time.monotonic()}
    rn, rsha, rerr = read_all(c)
    res.update(rx_len=rn, rx_sha=rsha, rx_err=rerr,
               rx_eof_at=time.monotonic())
    return res


def h_rst(args, c):
    """rst-er: with --size, send (up to) --rst-after bytes of the stream and
    abort; without, read --rst-after bytes and abort. SO_LINGER {1,0}."""
    if args.rst_after is None:
        args.rst_after = 0
    if args.size:
        return h_source(args, c)
    if args.rst_after == 0:
        rst_close(c)
        return {"rx_len": 0, "rst": True}
    return h_sink(args, c)


SERVERS = {
    "echo": h_echo,
    "rst": h_rst,
    "source": h_source,
    "sink": h_sink,
    "banner": h_banner,
    "tag": h_tag,
    "halfclose": h_halfclose,
}


# --------------------------------------------------------------------------
# Client kinds

def c_holder(args):
    target = (args.host, args.port)
    sel = selectors.DefaultSelector()
    socks = {}
    failed = 0
    pending = []
    for i in range(args.count):
        s = socket.socket(family_of(args.host), socket.SOCK_STREAM)
        if args.bind:
            s.bind((args.bind, 0))
        s.setblocking(False)
        err = s.connect_ex(target)
        if err not in (0, errno.EINPROGRESS):
            failed += 1
            s.close()
            continue
        pending.append((i, s, time.monotonic()))
    deadline = time.monotonic() + args.connect_timeout
    connected = 0
    for i, s, t0 in pending:
        left = max(0.0, deadline - time.monotonic())
        _, w, _ = select.select([], [s], [], left)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else -1
        if err != 0:
            failed += 1
            s.close()
            continue
        connected += 1
        socks[s] = (i, time.monotonic())
        sel.register(s, selectors.EVENT_READ)
    emit({"ev": "ready", "connected": connected, "failed": failed})
    ready(0)
    while True:
        if not socks:
            time.sleep(0.1)
            continue
        for key, _ in sel.select(1.0):
            s = key.fileobj
            i, t0 = socks[s]
            try:
                b = s.recv(65536)
                if b:
                    continue
                how = "EOF"
            except OSError as e:
                how = errname(e)
            sel.unregister(s)
            del socks[s]
            s.close()
            emit({"ev": "closed", "id": i, "how": how,
                  "after": round(time.monotonic() - t0, 4)})


def c_client(args):
    ready(0)
    target = (args.host, args.port)
    for i in range(args.count):
        r = {"ev": "conn", "i": i}
        t0 = time.monotonic()
        try:
            s = connect(target, bind=args.bind, timeout=args.timeout)
        except OSError as e:
            r.update(err="connect:" + errname(e),
                     total=round(time.monotonic() - t0, 4))
            emit(r)
            continue
        r["connect"] = round(time.monotonic() - t0, 4)
        try:
            if args.mode == "tag":
                data = b""
                first = None
                err = None
                try:
                    while True:
                        b = s.recv(4096)
                        if not b:
                            break
                        if first is None:
                            first = time.monotonic() - t0
                        data += b
                except OSError as e:
                    err = errname(e)
                r.update(tag=data.decode(errors="replace").split("\n", 1)[0],
                         first_byte=None if first is None else round(first, 4),
                         err=err)
            elif args.mode == "exchange":
                r.update(exchange_sock(s, args.size, args.seed,
                                       timeout=args.timeout))
            else:
                pass
        finally:
            s.close()
        r["total"] = round(time.monotonic() - t0, 4)
        emit(r)
    emit({"ev": "done"})


def c_slowreader(args):
    s = connect((args.host, args.port), timeout=args.timeout,
                rcvbuf=args.rcvbuf)
    if args.request:
        s.sendall(args.request.encode())
    ready(0)
    h = hashlib.sha256()
    n = 0
    err = None
    step = max(1, args.rate // 16)
    t_end = time.monotonic() + args.slow_for
    try:
        while time.monotonic() < t_end:
            t = time.monotonic()
            got = 0
            while got < step:
                b = s.recv(step - got)
                if not b:
                    raise EOFError
                h.update(b)
                got += len(b)
            n += got
            time.sleep(max(0.0, 1 / 16 - (time.monotonic() - t)))
    except EOFError:
        err = "EOF-early"
    except OSError as e:
        err = errname(e)
    emit({"ev": "fast", "slow_bytes": n})
    if err is None:
        k, _, err = read_all(s, h)
        n += k
    s.close()
    emit({"ev": "conn", "rx_len": n, "rx_sha": h.hexdigest(), "rx_err": err})


def c_trickle(args):
    s = connect((args.host, args.port), timeout=args.timeout)
    ready(0)
    ht = hashlib.sha256()
    hr = hashlib.sha256()
    sent = got = 0
    err = None
    t_end = time.monotonic() + args.duration
    try:
        while time.monotonic() < t_end:
            b = bytes([sent % 251])
            s.sendall(b)
            ht.update(b)
            sent += 1
            s.settimeout(args.interval)
            t_next = time.monotonic() + args.interval
            while True:
                left = t_next - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    r = s.recv(4096)
                except TimeoutError:
                    break
                if not r:
                    raise EOFError
                hr.update(r)
                got += len(r)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(args.timeout)
        k, _, err = read_all(s, hr)
        got += k
    except EOFError:
        err = "EOF-early"
    except OSError as e:
        err = errname(e)
    s.close()
    emit({"ev": "conn", "tx_len": sent, "tx_sha": ht.hexdigest(),
          "rx_len": got, "rx_sha": hr.hexdigest(), "rx_err": err})


CLIENTS = {
    "holder": c_holder,
    "client": c_client,
    "slowreader": c_slowreader,
    "trickle": c_trickle,
}


def parse_size(v):
    v = v.strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if v and v[-1].upper() in mult:
        return int(float(v[:-1]) * mult[v[-1].upper()])
    return int(v)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=sorted(list(SERVERS) + list(CLIENTS)))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", default="")
    p.add_argument("--size", type=parse_size, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rst-after", type=parse_size, default=None)
    p.add_argument("--reply-size", type=parse_size, default=0)
    p.add_argument("--reply-seed", type=int, default=2)
    p.add_argument("--banner", default="HELO\n")
    p.add_argument("--close", action="store_true")
    p.add_argument("--delay", type=float, default=0.0,
                   help="source: seconds to wait after accept")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--bind", default=None)
    p.add_argument("--mode", choices=["tag", "exchange", "connect"],
                   default="tag")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--rate", type=parse_size, default=64 * 1024)
    p.add_argument("--slow-for", type=float, default=3.0)
    p.add_argument("--rcvbuf", type=parse_size, default=16 * 1024)
    p.add_argument("--request", default="")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=3.0)
    args = p.parse_args(argv)
    if not args.name:
        args.name = args.kind
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    if args.kind in SERVERS:
        serve(args, SERVERS[args.kind])
    else:
        CLIENTS[args.kind](args)


if __name__ == "__main__":
    main()
