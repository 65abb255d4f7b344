"""
Config strictness (S26) and the unbracketed IPv6 form (S25): every bad
config makes `shoal -c` exit non-zero with a "FILE:LINE: message", and
`shoal -t -c` gives the same verdict; good configs pass `shoal -t`.
"""

import os
import re
import signal
import time

import pytest

import peers
from conftest import SLACK, alloc_port, run_shoal_check, run_shoal_start

MARK = "  #BAD"


def base_lines(fport, sport):
    return [
        "[global]",
        "threads = 1",
        "log_level = info",
        "",
        "[frontend web]",
        "bind = 127.0.0.1:%d" % fport,
        "backend = app",
        "timeout_client = 5s",
        "",
        "[backend app]",
        "balance = roundrobin",
        "server = s1 127.0.0.1:%d" % sport,
        "timeout_connect = 1s",
        "timeout_server = 5s",
        "retries = 2",
    ]


def edit(lines, after=None, replace=None, insert=None, bad=True):
    """Return new lines: `insert` (a line) placed after the first line
    starting with `after`, or the line starting with `replace` swapped for
    `insert`. The bad line is marked for line-number lookup."""
    out = list(lines)
    text = insert + (MARK if bad else "")
    if replace is not None:
        i = next(k for k, l in enumerate(out) if l.startswith(replace))
        out[i] = text
    else:
        i = next(k for k, l in enumerate(out) if l.startswith(after))
        out.insert(i + 1, text)
    return out


# (id, how to break the base config); "line" of the offending line is found
# from the marker. Each entry: (kwargs for edit, also-accepted line prefixes)
BAD = {
    "unknown_key_frontend": dict(after="backend =", insert="bogus = 1"),
    "unknown_key_global": dict(after="threads", insert="colour = blue"),
    "unknown_key_backend": dict(after="retries", insert="retry = 3"),
    "duplicate_key": dict(after="timeout_server", insert="timeout_connect = 2s"),
    "duplicate_balance": dict(after="balance", insert="balance = leastconn"),
    "duplicate_global": dict(after="log_level", insert="threads = 2"),
    "port_70000_bind": dict(replace="bind", insert="bind = 127.0.0.1:70000"),
    "port_70000_server": dict(replace="server",
                              insert="server = s1 127.0.0.1:70000"),
    "timeout_minus_one": dict(replace="timeout_connect",
                              insert="timeout_connect = -1"),
    "timeout_minus_one_s": dict(replace="timeout_server",
                                insert="timeout_server = -1s"),
    "timeout_5x": dict(replace="timeout_server", insert="timeout_server = 5x"),
    "duration_without_unit": dict(replace="timeout_client",
                                  insert="timeout_client = 5"),
    "grace_bad": dict(after="log_level", insert="grace = soon"),
    "missing_backend": dict(replace="backend =", insert="backend = nosuch"),
    "unknown_section": dict(after="retries", insert="[bogus thing]"),
    "line_without_equals": dict(replace="balance",
                                insert="balance roundrobin"),
    "bad_balance": dict(replace="balance", insert="balance = fastest"),
    "bad_threads": dict(replace="threads", insert="threads = many"),
    "bad_log_level": dict(replace="log_level", insert="log_level = loud"),
    "bad_maxconn": dict(after="log_level", insert="maxconn = -5"),
    "bad_retries": dict(replace="retries", insert="retries = lots"),
    "bad_weight": dict(replace="server",
                       insert="server = s1 127.0.0.1:%(sport)d weight=abc"),
    "unknown_server_option": dict(
        replace="server", insert="server = s1 127.0.0.1:%(sport)d speed=9"),
    "server_without_address": dict(replace="server", insert="server = s1"),
    "duplicate_server_name": dict(
        after="server", insert="server = s1 127.0.0.1:%(sport2)d"),
    "bad_ipv4_address": dict(replace="bind", insert="bind = 127.0.0.300:8080"),
    # S25: "::1:8080" without brackets is ambiguous and refused.
    "ipv6_without_brackets_bind": dict(replace="bind", insert="bind = ::1:%(fport)d"),
    "ipv6_without_brackets_server": dict(
        replace="server", insert="server = s1 ::1:%(sport)d"),
}

# Cases where naming the section header (instead of the key) is also fine.
ALT_LINES = {
    "missing_backend": "[frontend web]",
}


def write_bad(tmp_path, case):
    fport, sport, sport2 = alloc_port(), alloc_port(), alloc_port()
    spec = dict(BAD[case])
    spec["insert"] = spec["insert"] % dict(fport=fport, sport=sport,
                                           sport2=sport2)
    lines = edit(base_lines(fport, sport), **spec)
    lineno = next(k + 1 for k, l in enumerate(lines) if l.endswith(MARK))
    lines = [l[:-len(MARK)] if l.endswith(MARK) else l for l in lines]
    path = str(tmp_path / ("%s.conf" % case))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    alt = set()
    if case in ALT_LINES:
        alt.add(lines.index(ALT_LINES[case]) + 1)
    return path, lineno, alt


def assert_names_line(out, path, lines):
    pat = re.compile(r"%s:(\d+): \S" % re.escape(path))
    got = [int(m.group(1)) for m in pat.finditer(out)]
    assert got, "no '%s:LINE: message' in output:\n%s" % (path, out)
    assert set(got) & set(lines), "expected line %s, got %s:\n%s" % (
        sorted(lines), got, out)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_refused(case, tmp_path):
    """S26/S25: exit code != 0 and FILE:LINE naming the offending line, for
    both `shoal -c` and `shoal -t -c`."""
    path, lineno, alt = write_bad(tmp_path, case)
    rc_t, out_t = run_shoal_check(path)
    rc_c, out_c = run_shoal_start(path)
    assert rc_t != 0, "shoal -t accepted:\n" + open(path).read()
    assert rc_c is not None, "shoal -c started on:\n" + open(path).read() \
        + "\noutput:\n" + out_c
    assert rc_c != 0
    assert_names_line(out_t, path, {lineno} | alt)
    assert_names_line(out_c, path, {lineno} | alt)
    assert "AddressSanitizer" not in out_c + out_t
    assert "LeakSanitizer" not in out_c + out_t


@pytest.mark.parametrize("case", ["missing_file", "directory", "fifo",
                                  "chardev"])
def test_unreadable_config(case, tmp_path):
    """S26: a file that cannot be read: exit != 0, the message names the
    file, for -c and -t alike. A FIFO (nobody writes to it) or a device is
    refused at once instead of blocking open() or read() (issue 12 item 7)."""
    if case == "missing_file":
        path = str(tmp_path / "nosuch.conf")
    elif case == "fifo":
        path = str(tmp_path / "fifo.conf")
        os.mkfifo(path)
    elif case == "chardev":
        path = "/dev/zero"
    else:
        path = str(tmp_path / "adir.conf")
        os.mkdir(path)
    rc_t, out_t = run_shoal_check(path)
    rc_c, out_c = run_shoal_start(path)
    assert rc_t not in (0, None) and rc_c not in (0, None), (rc_t, rc_c)
    for out in (out_t, out_c):
        assert path in out, out
    if case in ("fifo", "chardev", "directory"):
        assert "not a regular file" in out_c, out_c


def test_reload_from_a_fifo_never_blocks(start_peer, start_shoal, tmp_path):
    """Issue 12 item 7: the config path replaced by a FIFO, then SIGHUP: the
    reload is refused at once (the control loop does not block in open()),
    the old config keeps serving, and SIGTERM still stops shoal."""
    echo = start_peer("echo")
    sh = start_shoal([echo], backend={"check": "none"},
                     allow_errors=[r"reload refused: .*not a regular file"])
    os.unlink(sh.conf_path)
    os.mkfifo(sh.conf_path)
    sh.send_signal(signal.SIGHUP)
    sh.wait_for(lambda: "not a regular file" in sh.log(), 5,
                what="reload refused")
    assert "reload refused" in sh.log()
    assert peers.echo_once(sh.addr) is None
    assert sh.stop(timeout=5 * SLACK) == 0


def test_good_configs_pass_check(tmp_path):
    """`shoal -t -c` exits 0 on good configs: the base one, IPv6 binds and
    servers in brackets, every key of the current config set."""
    fport, sport = alloc_port(), alloc_port()
    good = {
        "base": base_lines(fport, sport),
        "ipv6": [
            "[global]",
            "threads = auto",
            "[frontend web6]",
            "bind = [::1]:%d" % fport,
            "bind = 127.0.0.1:%d" % fport,
            "backend = app",
            "[backend app]",
            "server = s1 [::1]:%d" % sport,
            "server = s2 127.0.0.1:%d" % sport,
        ],
        "all_keys": [
            "; comment",
            "# another comment",
            "[global]",
            "threads = 2",
            "maxconn = 500",
            "grace = 2s",
            "log_level = debug",
            "",
            "[frontend web]",
            "bind = 127.0.0.1:%d" % fport,
            "backend = app",
            "timeout_client = 1m",
            "maxconn = 100",
            "",
            "[backend app]",
            "balance = leastconn",
            "server = s1 127.0.0.1:%d weight=2 maxconn=10" % sport,
            "server = s2 127.0.0.1:%d weight=1" % (sport + 1),
            "server = s3 127.0.0.1:%d backup" % (sport + 2),
            "timeout_connect = 500ms",
            "timeout_server = 30s",
            "timeout_queue = 2s",
            "retries = 0",
        ],
    }
    for balance in ("roundrobin", "source", "random"):
        lines = list(base_lines(fport, sport))
        lines[lines.index("balance = roundrobin")] = "balance = " + balance
        good["balance_" + balance] = lines
    for name, lines in good.items():
        path = str(tmp_path / ("%s.conf" % name))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        rc, out = run_shoal_check(path)
        assert rc == 0, "%s rejected:\n%s" % (name, out)


def test_100k_servers_load_start_and_reload_fast(start_shoal, tmp_path):
    """Issue 12 item 8: parsing and building the table are linear. 100 000
    servers: `shoal -t` under 1 s (measured 0.3 s; quadratic code needed
    more than 20 s), start and a SIGHUP reload each well under 5 s (13 s at
    start and 7.7 s per reload with 40 000 servers before)."""
    fport = alloc_port()
    lines = ["[global]", "threads = 1", "", "[frontend web]",
             "bind = 127.0.0.1:%d" % fport, "backend = app", "",
             "[backend app]", "check = none"]
    lines += ["server = s%d 10.%d.%d.%d:80" % (i, (i >> 16) & 255,
                                              (i >> 8) & 255, i & 255)
              for i in range(100000)]
    text = "\n".join(lines) + "\n"
    path = str(tmp_path / "big.conf")
    with open(path, "w") as f:
        f.write(text)
    t0 = time.monotonic()
    rc, out = run_shoal_check(path, timeout=60)
    took = time.monotonic() - t0
    assert rc == 0, out
    # 1 s target; 2 s bound for a shared, loaded machine
    assert took < 2.0 * SLACK, "shoal -t took %.2fs" % took
    t0 = time.monotonic()
    sh = start_shoal(config_text=text, binds=["127.0.0.1:%d" % fport],
                     wait=False)
    sh.wait_ready(timeout=60)
    took = time.monotonic() - t0
    assert took < 5.0 * SLACK, "start took %.2fs" % took
    t0 = time.monotonic()
    sh.send_signal(signal.SIGHUP)
    sh.wait_for(lambda: "reload done" in sh.log(), 60, what="reload done")
    took = time.monotonic() - t0
    assert took < 5.0 * SLACK, "reload took %.2fs" % took


def _write(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case", ["key_missing", "key_group_readable",
                                  "key_fifo", "unknown_interface",
                                  "v4mapped_bind", "v4mapped_stats"])
def test_check_refuses_what_start_refuses(case, tmp_path):
    """Issue 12 item 9: `shoal -t` says valid only when start would not
    refuse the file: key_file missing, group-readable or not a regular file,
    an unknown discovery interface, an IPv4-mapped IPv6 bind. Both -t and
    -c exit non-zero with a FILE:LINE message."""
    fport, sport, dport = alloc_port(), alloc_port(), alloc_port()
    key = str(tmp_path / "disc.key")
    _write(key, ["1 " + "ab" * 32])
    os.chmod(key, 0o600)
    bind = "127.0.0.1:%d" % fport
    stats = []
    iface = "lo"
    if case == "key_missing":
        key = str(tmp_path / "nokey")
    elif case == "key_group_readable":
        os.chmod(key, 0o640)
    elif case == "key_fifo":
        key = str(tmp_path / "fifo.key")
        os.mkfifo(key, 0o600)
    elif case == "unknown_interface":
        iface = "nosuchif0"
    elif case == "v4mapped_bind":
        bind = "[::ffff:127.0.0.1]:%d" % fport
    elif case == "v4mapped_stats":
        stats = ["", "[stats]", "bind = [::ffff:127.0.0.1]:%d" % alloc_port()]
    lines = base_lines(fport, sport)
    lines[lines.index("bind = 127.0.0.1:%d" % fport)] = "bind = " + bind
    lines += ["discovery = yes", "", "[discovery]", "group = 239.255.76.66",
              "port = %d" % dport, "interface = " + iface,
              "key_file = " + key, "allow = 127.0.0.0/8"] + stats
    path = _write(str(tmp_path / "c.conf"), lines)
    rc_t, out_t = run_shoal_check(path)
    rc_c, out_c = run_shoal_start(path)
    assert rc_t not in (0, None), out_t
    assert rc_c not in (0, None), out_c
    assert re.search(re.escape(path) + r":\d+: ", out_t), out_t
    want = {"key_missing": "No such file", "key_group_readable": "too open",
            "key_fifo": "not a regular file",
            "unknown_interface": "interface 'nosuchif0'",
            "v4mapped_bind": "IPv4-mapped IPv6 address: write 127.0.0.1:",
            "v4mapped_stats": "IPv4-mapped IPv6 address"}[case]
    assert want in out_t, out_t
