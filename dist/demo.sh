#!/bin/sh
# dist/demo.sh - install what is missing, build, start shoal on its embedded
# default configuration (frontend 127.0.0.1:8080, stats later on
# 127.0.0.1:1936), then three demo backends, each announced to shoal by its
# own shoal-announce (no static server anywhere). Ctrl-C stops everything.
set -eu
cd "$(dirname "$0")/.."
. dist/deps.sh
deps_install build

[ -f build/build.ninja ] || meson setup build --buildtype=debugoptimized >/dev/null
ninja -C build >/dev/null

pids=""
cleanup() {
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

./build/shoal &
pids="$pids $!"

for i in 1 2 3; do
    python3 dist/demo-backend.py "web$i" "808$i" &
    pids="$pids $!"
    # Unsigned, multicast on lo: what the default config accepts.
    ./build/shoal-announce --pool app --port "808$i" --label "web$i" \
        --check http:/ &
    pids="$pids $!"
done

cat <<MSG

  shoal demo: frontend http://127.0.0.1:8080/ -> backends 127.0.0.1:8081-8083,
  each announced by shoal-announce (they join within a couple of seconds)
  try, in another terminal:
      for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:8080/; done
      wrk -t2 -c20 -d5s http://127.0.0.1:8080/
      pkill -USR1 -f 'port 8082'    # web2 drains; again: back
  Ctrl-C stops shoal, the announcers and the demo backends.

MSG
wait
