#!/bin/sh
# dist/lab/replica-timings.sh - measure the lab's timings on replica.sh:
# join (scale 2 -> 5), crash (kill a node under a client loop: until shoal
# stops routing to it, until it is removed), graceful stop under ab -c 20
# (stop time, drain time, failed requests). Settings: dist/lab/shoal.ini
# and the run scripts' defaults (announce interval 1s, ttl 3.5s, check
# GET /healthz every 1s, rise 2, fall 2, timeout_connect 1s).
#
# usage: dist/lab/replica-timings.sh [ROUNDS]   (default 3; needs root)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-3}
export SHOAL_LAB_STATE=${SHOAL_LAB_STATE:-/tmp/shoal-lab-timings}
r="$here/replica.sh"
trap '"$r" down >/dev/null 2>&1 || true' EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }
stats() { "$r" client curl -s --max-time 1 http://192.168.42.42:1936/stats.json; }
# Is ADDR in shoal's table with state STATE (or at all, with "any")?
has() { stats | grep -o "\"address\":\"$1\",[^}]*" | grep -q "$2"; }

"$r" up 2 | tail -1
for i in $(seq "$rounds"); do
    "$r" scale 2 >/dev/null
    echo "join: $("$r" scale 5 | tail -1)"
done

for i in $(seq "$rounds"); do
    "$r" scale 3 >/dev/null
    a=192.168.42.12:3000
    "$r" client sh -c 'end=$(($(date +%s) + 8)); e=0; n=0
        while [ $(date +%s) -lt $end ]; do n=$((n + 1))
            curl -s -o /dev/null --max-time 5 http://192.168.42.42/ || e=$((e + 1))
        done; echo "$n requests, $e errors"' >/tmp/shoal-lab-timings.loop &
    sleep 1
    t0=$(now_ms)
    "$r" crash node2 >/dev/null
    while has "$a" '"state":"up"'; do sleep 0.05; done
    t1=$(now_ms)
    while has "$a" '"address"'; do sleep 0.05; done
    t2=$(now_ms)
    wait
    echo "crash: out of rotation $((t1 - t0)) ms, removed $((t2 - t0)) ms;" \
        "client loop: $(cat /tmp/shoal-lab-timings.loop)"
    "$r" start node2 >/dev/null
done
rm -f /tmp/shoal-lab-timings.loop

for i in $(seq "$rounds"); do
    "$r" scale 3 >/dev/null
    "$r" client ab -l -q -s 10 -n 3000 -c 20 http://192.168.42.42/ \
        >/tmp/shoal-lab-timings.ab 2>&1 &
    sleep 1
    s=$("$r" stop node3)
    wait
    d=$(grep -o 'drained in [0-9]* ms' "$SHOAL_LAB_STATE/node3/log" | tail -1)
    echo "stop under ab -c 20: ${s#replica: }, $d;" \
        "$(grep -E 'Failed requests' /tmp/shoal-lab-timings.ab | tr -s ' ')"
    "$r" start node3 >/dev/null
done
rm -f /tmp/shoal-lab-timings.ab
