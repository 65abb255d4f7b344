"""
Slow consumer, bounded buffering (S11).
"""

import peers
from conftest import SLACK

MiB = 1 << 20


def test_slow_reader_bounded_memory(start_peer, start_shoal):
    """S11: the backend pushes 256 MiB; the client (SO_RCVBUF 16 KiB) reads
    64 KiB/s for 3 s, then at full speed. During the slow phase shoal's RSS
    grows by at most 8 MiB and the backend stays blocked (its stream does
    not complete); at the end the digest matches."""
    size = 256 * MiB
    src = start_peer("source", "--size", size, "--seed", 110)
    lb = start_shoal([src])
    rss0 = lb.rss_kb()
    rd = start_peer("slowreader", "--rate", 64 * 1024, "--slow-for", 3,
                    "--rcvbuf", 16 * 1024, host=lb.addr[0], port=lb.port)
    peak = rss0
    samples = 0

    def slow_phase_over():
        nonlocal peak, samples
        peak = max(peak, lb.rss_kb())
        samples += 1
        return rd.select("fast")

    lb.wait_for(slow_phase_over, 10, interval=0.1, what="slow phase end")
    fast = rd.select("fast")[0]
    src_done_early = src.select("sent")
    assert samples >= 10
    assert fast["slow_bytes"] <= 4 * 64 * 1024, fast
    assert not src_done_early, "backend finished writing 256 MiB while " \
        "the client read %d bytes" % fast["slow_bytes"]
    growth = peak - rss0
    if not lb.is_asan():  # ASan's quarantine and shadow memory inflate RSS
        assert growth <= 8 * 1024, "RSS grew by %d kB during the slow " \
            "phase" % growth
    ev = rd.wait_events("conn", timeout=60 * SLACK)[0]
    assert ev["rx_err"] is None, ev
    assert ev["rx_len"] == size
    assert ev["rx_sha"] == peers.stream_digest(110, size)
    s = lb.wait_sessions(1)[0]
    assert s["bytes_out"] == size and s["term"] == "--", s
    lb.check_nl3()
