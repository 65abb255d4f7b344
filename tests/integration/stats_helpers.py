"""
stats_helpers.py - what test_stats.py needs beyond conftest.py: configs
with a [stats] section, a raw HTTP/1.x client, a strict parser of the
Prometheus text exposition format 0.0.4, a DOM reader for the stats page,
and headless Chromium.
"""

import html.parser
import math
import os
import re
import shutil
import socket
import subprocess
import time

from conftest import render_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")


# --------------------------------------------------------------------------
# Configs

def stats_config(stats_bind, frontends, backends, global_=None,
                 refresh="1s", discovery=None, extra=""):
    """INI text: render_config() + [discovery] (list of (key, value), or
    None) + [stats] on stats_bind (None: no [stats] section) + extra."""
    g = {"threads": 2, "log_level": "info", "grace": "5s"}
    g.update(global_ or {})
    text = render_config(g, frontends, backends)
    if discovery is not None:
        text += "\n[discovery]\n" + "".join("%s = %s\n" % kv
                                             for kv in discovery)
    if stats_bind is not None:
        text += "\n[stats]\nbind = %s\n" % stats_bind
        if refresh is not None:
            text += "refresh = %s\n" % refresh
    return text + extra


def admin_command(path, line, timeout=5.0):
    """One admin-socket command (unix socket at path); the answer, which
    ends with an empty line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n\n"):
            b = s.recv(4096)
            if not b:
                break
            data += b
    finally:
        s.close()
    return data.decode()


# --------------------------------------------------------------------------
# HTTP

class Response:
    def __init__(self, raw, elapsed, ttfb):
        self.raw = raw
        self.elapsed = elapsed      # s, until EOF
        self.ttfb = ttfb            # s, until the first byte
        head, sep, self.body = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError("no end of head in reply: %r" % raw[:300])
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3}) (.*)$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        self.status = int(m.group(1))
        self.reason = m.group(2)
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k in self.headers:
                raise AssertionError("header %s twice" % k)
            self.headers[k] = v.strip()

    def text(self):
        return self.body.decode("utf-8")


def http_raw(port, data, host="127.0.0.1", timeout=5.0, shut=False):
    """Send `data`, read until EOF; return a Response. The server must
    close the connection (Connection: close)."""
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        ttfb = None
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            if ttfb is None:
                ttfb = time.monotonic() - t0
            chunks.append(b)
    finally:
        s.close()
    return Response(b"".join(chunks), time.monotonic() - t0, ttfb)


def http_get(port, path="/", method="GET", version="HTTP/1.1",
             host="127.0.0.1", timeout=5.0, extra=""):
    req = "%s %s %s\r\nHost: %s:%d\r\nUser-Agent: shoal-tests\r\n%s\r\n" % (
        method, path, version, host, port, extra)
    return http_raw(port, req.encode(), host=host, timeout=timeout)


def check_common_headers(r, ctype_prefix=None):
    """The headers every reply carries."""
    h = r.headers
    assert h.get("connection") == "close", h
    assert h.get("cache-control") == "no-store", h
    assert "content-type" in h, h
    assert int(h["content-length"]) >= 0, h
    if ctype_prefix is not None:
        assert h["content-type"].startswith(ctype_prefix), h


def fetch(port, path, timeout=5.0):
    r = http_get(port, path, timeout=timeout)
    assert r.status == 200, (path, r.status, r.body[:200])
    assert int(r.headers["content-length"]) == len(r.body), r.headers
    return r


def fetch_json(port):
    import json
    r = fetch(port, "/stats.json")
    assert r.headers["content-type"].startswith("application/json")
    return json.loads(r.body)


def servers_by_id(doc):
    """{"backend/server": server dict} from a /stats.json document."""
    out = {}
    for be in doc["backends"]:
        for s in be["servers"]:
            out["%s/%s" % (be["name"], s["name"])] = s
    return out


# --------------------------------------------------------------------------
# Prometheus text format 0.0.4, parsed strictly

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _value(s, where):
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not FLOAT.match(s):
        raise ValueError("%s: bad value %r" % (where, s))
    return float(s)


def _labels(text, i, where):
    """Parse '{a="x",b="y"}' starting at text[i] == '{'. Returns (dict,
    index after '}')."""
    assert text[i] == "{"
    i += 1
    labels = {}
    while True:
        if text[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(text, i)
        if not m:
            raise ValueError("%s: bad label name at %r" % (where, text[i:]))
        name = m.group(0)
        if name.startswith("__"):
            raise ValueError("%s: reserved label name %s" % (where, name))
        i = m.end()
        if text[i:i + 2] != '="':
            raise ValueError("%s: expected =\" after %s" % (where, name))
        i += 2
        val = []
        while True:
            if i >= len(text):
                raise ValueError("%s: unterminated label value" % where)
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt == "\\":
                    val.append("\\")
                elif nxt == '"':
                    val.append('"')
                elif nxt == "n":
                    val.append("\n")
                else:
                    raise ValueError("%s: bad escape \\%s" % (where, nxt))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            if c == "\n":
                raise ValueError("%s: raw newline in label value" % where)
            val.append(c)
            i += 1
        if name in labels:
            raise ValueError("%s: label %s twice" % (where, name))
        labels[name] = "".join(val)
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise ValueError("%s: expected , or } at %r" % (where, text[i:]))


def parse_prometheus(text):
    """Parse exposition text strictly. Returns {family: {"type", "help",
    "samples": [(labels dict, value)]}}. Raises ValueError on anything
    Prometheus' own parser would reject, plus the project's conventions:
    HELP and TYPE for every family, before its samples; counters end in
    _total; families are not interleaved; no series twice."""
    if not text.endswith("\n"):
        raise ValueError("exposition does not end with a newline")
    fams = {}
    order = []
    current = None
    seen_series = set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d" % n
        if line == "":
            raise ValueError("%s: empty line" % where)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.fullmatch(name):
                    raise ValueError("%s: bad metric name %r" % (where, name))
                f = fams.get(name)
                if f is None:
                    f = fams[name] = {"type": None, "help": None,
                                      "samples": []}
                    order.append(name)
                elif current != name:
                    raise ValueError("%s: family %s interleaved"
                                     % (where, name))
                if f["samples"]:
                    raise ValueError("%s: %s after samples of %s"
                                     % (where, parts[1], name))
                current = name
                arg = parts[3] if len(parts) == 4 else ""
                if parts[1] == "TYPE":
                    if f["type"] is not None:
                        raise ValueError("%s: second TYPE for %s"
                                         % (where, name))
                    if arg not in TYPES:
                        raise ValueError("%s: bad type %r" % (where, arg))
                    f["type"] = arg
                else:
                    if f["help"] is not None:
                        raise ValueError("%s: second HELP for %s"
                                         % (where, name))
                    if re.search(r"\\[^\\n]", arg):
                        raise ValueError("%s: bad escape in HELP" % where)
                    f["help"] = arg
            continue
        m = METRIC_NAME.match(line)
        if not m:
            raise ValueError("%s: bad sample %r" % (where, line))
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, where)
        if i >= len(line) or line[i] != " ":
            raise ValueError("%s: expected a space before the value" % where)
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2):
            raise ValueError("%s: bad value/timestamp %r" % (where, rest))
        value = _value(rest[0], where)
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise ValueError("%s: bad timestamp %r" % (where, rest[1]))
        f = fams.get(name)
        if f is None:
            # A histogram's samples: NAME_bucket (with le), _sum, _count.
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            f = fams.get(base)
            if f is None or f["type"] != "histogram":
                raise ValueError("%s: sample %s without TYPE"
                                 % (where, name))
            if name.endswith("_bucket") and "le" not in labels:
                raise ValueError("%s: %s without le" % (where, name))
            name = base
            labels = dict(labels, _sample=m.group(0))
        if current != name:
            raise ValueError("%s: family %s interleaved" % (where, name))
        if f["type"] is None or f["help"] is None:
            raise ValueError("%s: %s lacks HELP or TYPE" % (where, name))
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ValueError("%s: series %s twice" % (where, key))
        seen_series.add(key)
        if f["type"] == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError("%s: counter %s negative" % (where, name))
        f["samples"].append((labels, value))
    for name, f in fams.items():
        if f["type"] is None or f["help"] is None:
            raise ValueError("%s: no TYPE or HELP" % name)
        if f["type"] == "counter" and not name.endswith("_total"):
            raise ValueError("counter %s does not end in _total" % name)
    return fams


def cross_check_prometheus(text):
    """Also feed text to the reference parsers: Prometheus' own (promtool
    check metrics, from Debian's prometheus) and the Python client's. Both
    are test dependencies (dist/deps.sh). Returns the checkers' names."""
    exe = shutil.which("promtool")
    assert exe, "promtool missing: install Debian's prometheus (dist/deps.sh)"
    r = subprocess.run([exe, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "promtool: %s%s" % (r.stdout, r.stderr)
    from prometheus_client.parser import text_string_to_metric_families
    fams = list(text_string_to_metric_families(text))
    assert fams
    return ["promtool", "prometheus_client"]


def metric(fams, name, **labels):
    """The value of the one sample of `name` with exactly these labels."""
    got = [v for ls, v in fams[name]["samples"] if ls == labels]
    assert len(got) == 1, (name, labels, fams[name]["samples"][:5])
    return got[0]


# --------------------------------------------------------------------------
# The page's DOM

class PageDom(html.parser.HTMLParser):
    """Collects server rows (tr.server with data-server / data-state),
    their badge text, frontend rows and the discovery verdict cells."""

    def __init__(self, text):
        super().__init__()
        self.servers = {}       # "backend/server" -> {"state", "classes", ...}
        self.frontends = []
        self.verdicts = {}
        self.backends = {}      # name -> {"up", "total"}
        self.meta_refresh = None
        self.title = ""
        self._row = None
        self._in_badge = False
        self._verdict = None
        self._in_title = False
        self._links = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            self.meta_refresh = a.get("content")
        if tag == "title":
            self._in_title = True
        if tag in ("link", "script", "img"):
            self._links.append((tag, a))
        if tag == "section" and "backend" in cls:
            self.backends[a["data-backend"]] = {
                "up": int(a["data-up"]), "total": int(a["data-total"])}
        if tag == "tr" and "server" in cls:
            self._row = {"state": a.get("data-state"), "classes": cls,
                         "source": a.get("data-source"), "badge": ""}
            self.servers[a["data-server"]] = self._row
        elif tag == "tr" and "frontend" in cls:
            self.frontends.append(a.get("data-frontend"))
        if tag == "span" and "badge" in cls and self._row is not None:
            self._in_badge = True
        if tag == "td" and "data-verdict" in a:
            self._verdict = a["data-verdict"]
            self.verdicts[self._verdict] = ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "span":
            self._in_badge = False
        if tag == "td":
            self._verdict = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_badge and self._row is not None:
            self._row["badge"] += data
        if self._verdict is not None:
            self.verdicts[self._verdict] += data
        if self._in_title:
            self.title += data

    @property
    def external(self):
        """Elements that would load something (must be none)."""
        return self._links


# --------------------------------------------------------------------------
# Chromium

def chromium_bin():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium(url, profile_dir, screenshot=None, dump_dom=False,
             size=(1400, 900), timeout=60.0):
    """Run headless Chromium once on url. Returns its stdout (the DOM with
    dump_dom). profile_dir: a fresh directory for --user-data-dir."""
    exe = chromium_bin()
    assert exe is not None, \
        "chromium not installed (dist/deps.sh installs it: deps_test)"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-quic",
           "--disable-extensions", "--hide-scrollbars",
           "--user-data-dir=%s" % profile_dir,
           "--window-size=%d,%d" % size]
    if screenshot is not None:
        cmd.append("--screenshot=%s" % screenshot)
    if dump_dom:
        cmd.append("--dump-dom")
    cmd.append(url)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError("chromium exited %d:\n%s" % (r.returncode,
                                                           r.stderr[-3000:]))
    return r.stdout
