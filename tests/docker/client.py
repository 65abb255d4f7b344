"""A bounded HTTP client loop for the lab test, run inside its namespace.

    python3 client.py URL SECONDS MAX_REQUESTS

Sends sequential GETs (a new connection each, as ab does) for at most
SECONDS or MAX_REQUESTS, whichever comes first, or until a file named by
$CLIENT_STOP exists. Prints one JSON line: ok, errors (with reasons) and
how many answers each backend (x-backend-ip) gave.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse


def main():
    url, seconds, max_requests = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    stop = os.environ.get("CLIENT_STOP")
    u = urllib.parse.urlsplit(url)
    ok, errors, by_backend = 0, [], {}
    deadline = time.monotonic() + seconds
    for _ in range(max_requests):
        if time.monotonic() > deadline or (stop and os.path.exists(stop)):
            break
        try:
            c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
            c.request("GET", u.path or "/")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                errors.append(f"status {r.status}")
                continue
            ip = r.getheader("x-backend-ip", "?")
            by_backend[ip] = by_backend.get(ip, 0) + 1
            ok += 1
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{type(e).__name__}: {e}")
    print(json.dumps({"ok": ok, "errors": errors, "by_backend": by_backend}))


if __name__ == "__main__":
    main()
