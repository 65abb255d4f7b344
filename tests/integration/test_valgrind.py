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
