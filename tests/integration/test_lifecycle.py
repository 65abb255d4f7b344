"""
Lifecycle: graceful stop with streams in flight (S23), grace expiry, SIGINT,
SIGPIPE never kills shoal (S24).
"""

import hashlib
import random
import signal
import threading
import time

import peers
from conftest import SLACK

MiB = 1 << 20


def wait_refused(addr, timeout):
    """Poll connect() until ECONNREFUSED; seconds it took, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            s = peers.connect(addr, timeout=1)
            s.close()
        except ConnectionRefusedError:
            return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.005)
    return None


def test_graceful_stop_streams_finish(start_peer, start_shoal):
    """S23: four 64 MiB downloads in flight (each client has read 1 MiB and
    paused); SIGTERM. New connects are refused at once, the four streams
    then finish byte-exact, shoal exits 0 soon after the last one."""
    size = 64 * MiB
    s1 = start_peer("source", "--size", size, "--seed", 90, name="s1")
    s2 = start_peer("source", "--size", size, "--seed", 90, name="s2")
    lb = start_shoal([s1, s2], global_={"grace": "30s"})
    started = threading.Barrier(5)
    go = threading.Event()
    results = [None] * 4

    def stream(i):
        s = peers.connect(lb.addr, timeout=30)
        try:
            first = b""
            while len(first) < MiB:
                b = s.recv(MiB - len(first))
                if not b:
                    break
                first += b
            started.wait(10)
            go.wait(30)
            h = hashlib.sha256(first)
            n, sha, err = peers.read_all(s, h)
            results[i] = (len(first) + n, sha, err)
        finally:
            s.close()

    ts = [threading.Thread(target=stream, args=(i,), daemon=True)
          for i in range(4)]
    for t in ts:
        t.start()
    started.wait(10)
    lb.wait_for(lambda: len(s1.accepts()) + len(s2.accepts()) == 4, 5,
                what="4 backend connections")
    lb.send_signal(signal.SIGTERM)
    refused = wait_refused(lb.addr, 1.0 * SLACK)
    assert refused is not None, "frontend still accepting after SIGTERM"
    assert lb.alive(), "shoal exited with 4 streams in flight"
    go.set()
    for t in ts:
        t.join(60)
    t_done = time.monotonic()
    want = peers.stream_digest(90, size)
    for i, r in enumerate(results):
        assert r == (size, want, None), "stream %d: %s" % (i, r)
    rc = lb.wait_exit(5 * SLACK)
    assert rc == 0
    assert time.monotonic() - t_done < 5 * SLACK
    sessions = [s for s in lb.sessions() if s["bytes_out"] == size]
    assert len(sessions) == 4 and all(s["term"] == "--" for s in sessions)


def test_grace_expiry(start_peer, start_shoal):
    """S23 (grace runs out): a connection held open through shoal is closed
    when grace (1s) expires; shoal exits 0 about grace after SIGTERM; the
    session ends with term KD. Meanwhile new connects are refused."""
    echo = start_peer("echo")
    lb = start_shoal([echo], global_={"grace": "1s"})
    s = peers.connect(lb.addr)
    local = peers.fmt_addr(s.getsockname())
    s.sendall(b"ping")
    assert s.recv(10) == b"ping"
    t0 = time.monotonic()
    lb.send_signal(signal.SIGTERM)
    assert wait_refused(lb.addr, 0.5 * SLACK) is not None
    s.settimeout(5 * SLACK)
    try:
        end = s.recv(10)
        how = "EOF" if end == b"" else "data"
    except OSError as e:
        how = peers.errname(e)
    t_closed = time.monotonic() - t0
    s.close()
    rc = lb.wait_exit(5 * SLACK)
    t_exit = time.monotonic() - t0
    assert rc == 0
    assert how in ("EOF", "ECONNRESET"), how
    assert 0.8 <= t_closed <= 1.0 + 0.5 * SLACK, t_closed
    assert t_exit <= 1.0 + 1.0 * SLACK, t_exit
    # (A probe of wait_refused may have been accepted just before the
    # listeners closed: look at the held connection's session only.)
    port = local.rsplit(":", 1)[1]
    sess = [x for x in lb.sessions()
            if str(x["client"]).rsplit(":", 1)[1] == port]
    assert len(sess) == 1 and sess[0]["term"] == "KD", lb.sessions()


def test_sigint_stops_cleanly(start_peer, start_shoal):
    """SIGINT behaves like SIGTERM: with no session, exit 0 at once."""
    echo = start_peer("echo")
    lb = start_shoal([echo])
    r = peers.exchange(lb.addr, 1000, 3)
    assert r["rx_sha"] == peers.stream_digest(3, 1000)
    lb.wait_sessions(1)
    t0 = time.monotonic()
    assert lb.stop(sig=signal.SIGINT) == 0
    assert time.monotonic() - t0 < 2 * SLACK


def test_sigpipe_client_closes_mid_stream(start_peer, start_shoal):
    """S24: 200 times, a backend streams and the client closes after a
    random amount (0-512 KiB, half with an RST), 4 clients at a time; then
    150 uploads into a backend that resets after 64 KiB. shoal survives
    every write to a dead peer; bounded time; NL3."""
    src = start_peer("source", "--size", 64 * MiB, "--seed", 95)
    lb = start_shoal([src], expect_errors=True)
    rnd = random.Random(2024)
    plan = [(rnd.randrange(0, 512 * 1024), rnd.random() < 0.5)
            for _ in range(200)]
    errors = []

    def worker(part):
        for amount, rst in part:
            try:
                s = peers.connect(lb.addr, timeout=10)
                got = 0
                while got < amount:
                    b = s.recv(min(65536, amount - got))
                    if not b:
                        break
                    got += len(b)
                if rst:
                    peers.rst_close(s)
                else:
                    s.close()
            except OSError as e:
                errors.append(peers.errname(e))

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(plan[i::4],), daemon=True)
          for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts), "clients stuck"
    assert lb.alive(), "shoal died: %s" % lb.log()[-2000:]
    assert not errors, errors[:5]
    lb.wait_sessions(200, timeout=20)
    lb.check_nl3()

    # The other direction: the backend resets while shoal writes to it.
    rs = start_peer("sink", "--rst-after", 64 * 1024, name="rs")
    lb2 = start_shoal([rs], expect_errors=True)
    for i in range(150):
        s = peers.connect(lb2.addr, timeout=10)
        peers.send_seeded(s, 96, 2 * MiB)
        s.close()
    assert time.monotonic() - t0 < 60 * SLACK
    lb2.wait_sessions(150, timeout=20)
    assert lb2.alive()
    lb2.check_nl3()
    assert lb.alive()


STRAY = ("SIGALRM", "SIGUSR1", "SIGUSR2", "SIGVTALRM", "SIGIO")
QUIET = ("SIGPIPE", "SIGTTIN", "SIGTTOU", "SIGXFSZ")


def test_stray_signals_do_not_kill(start_peer, start_shoal):
    """Issue 12 item 11: signals an operator may send by mistake (SIGALRM
    killed shoal; HAProxy survives it) are ignored: shoal keeps serving,
    the stray ones are logged, and SIGTERM still stops it with exit 0."""
    echo = start_peer("echo")
    sh = start_shoal([echo], backend={"check": "none"})
    for name in STRAY + QUIET:
        sh.send_signal(getattr(signal, name))
        time.sleep(0.05)
        assert sh.alive(), "%s killed shoal:\n%s" % (name, sh.log()[-2000:])
        assert peers.echo_once(sh.addr) is None, name
    # One warning per second at most: the first stray one is logged.
    sh.wait_for(lambda: "SIGALRM received: ignored" in sh.log(), 2,
                what="SIGALRM logged")
    time.sleep(1.1)
    sh.send_signal(signal.SIGUSR1)
    sh.wait_for(lambda: "SIGUSR1 received: ignored" in sh.log(), 2,
                what="SIGUSR1 logged")
    assert sh.stop() == 0
