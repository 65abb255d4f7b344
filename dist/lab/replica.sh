#!/bin/sh
# dist/lab/replica.sh - the AIT Lab 04 stack without Docker, in network
# namespaces: a bridge (in a namespace of its own), the balancer "ha" at
# 192.168.42.42, web-app nodes node1..nodeN at 192.168.42.(10+N), and a
# client at 192.168.42.2. Each of ha and the nodes runs Debian's s6-svscan as
# PID 1 of its own PID, mount and UTS namespaces, as in a container, with the
# service directories of dist/lab/ (ha/service, webapp/service). Nothing is
# added to the host's own network namespace: 192.168.42.0/24 exists only
# inside the lab.
#
# usage: dist/lab/replica.sh COMMAND [ARGS]
#   up N          make the lab with N nodes; waits until N nodes are up
#   scale N       start or gracefully stop nodes until N run; waits
#   crash NODE    kill every process of NODE at once (SIGKILL to its PID 1,
#                 like docker kill) and unplug its cable
#   stop NODE     graceful stop: SIGTERM to its PID 1 (like docker stop),
#                 SIGKILL after 10 s; prints the time it took
#   start NODE    start a stopped or crashed node again
#   client CMD... run CMD in the client namespace (e.g. curl -s ha/)
#   exec NAME CMD...  run CMD in the network namespace of ha or a node
#   status        the nodes and what shoal says about them
#   scaler        (started by up, in the background) carry out the scale
#                 requests of shoal's scale_hook dist/lab/hooks/replica-scale:
#                 one node more or less, between SHOAL_SCALE_MIN (1) and
#                 SHOAL_SCALE_MAX (8) nodes; ends with the lab
#   down          stop everything and remove every namespace and file
#   app-dir       print the directory of the app with its modules
#                 (installed once), to run it by hand: node DIR/app.js
# NODE is "node3" or "3". Needs root, iproute2, s6, nodejs and npm (the
# app's modules are installed once with npm ci into a cache directory),
# curl, and shoal built (SHOAL_BUILD, default ./build).
#
# Environment: SHOAL_LAB_STATE (default /tmp/shoal-lab; where state, logs
# and the key are kept), SHOAL_BUILD, SHOAL_LAB_CONF (the balancer's
# config, default dist/lab/shoal.ini), SHOAL_LAB_CACHE (default
# ~/.cache/shoal-lab), SHOAL_LAB_KEY (default: a fresh key made by keygen),
# SHOAL_LAB_HOSTS (extra /etc/hosts lines for boxes plugged in from now on),
# and what the run scripts read (SHOAL_TARGET, SHOAL_INTERVAL,
# SHOAL_DRAIN_TIMEOUT, PORT, TAG ...), passed to every node.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
state=${SHOAL_LAB_STATE:-/tmp/shoal-lab}
build=${SHOAL_BUILD:-$top/build}
cache=${SHOAL_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shoal-lab}
subnet=192.168.42
stop_timeout=10

die() { echo "replica: $*" >&2; exit 1; }
say() { echo "replica: $*"; }

# ---------------------------------------------------------------- naming

lab_id() { cat "$state/id" 2>/dev/null || die "no lab at $state (run: up N)"; }
ns() { echo "shl-$(lab_id)-$1"; }             # netns of ha, client, net, nodeN
node_name() {
    case "$1" in
    node[0-9]*) n=${1#node} ;;
    [0-9]*) n=$1 ;;
    *) die "bad node '$1' (node3 or 3)" ;;
    esac
    case "$n" in *[!0-9]*|"") die "bad node '$1'" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "node numbers go from 1 to 200"
    echo "node$n"
}
node_ip() { echo "$subnet.$((10 + ${1#node}))"; }

# The host pid of the PID 1 of a box (ha or a node), or nothing.
init_pid() {
    local p c
    p=$(cat "$state/$1/unshare.pid" 2>/dev/null) || return 0
    c=$(cat "/proc/$p/task/$p/children" 2>/dev/null) || return 0
    echo "$c" | awk '{print $1}'
}
alive() { [ -n "$(init_pid "$1")" ]; }

# ---------------------------------------------------------------- network

# A namespace plugged into the lab bridge, as eth0 with address $2.
plug() {
    local name addr id n
    name=$1 addr=$2 id=$(lab_id)
    n=$(ns "$name")
    ip netns add "$n"
    ip -n "$n" link set lo up
    ip -n "$(ns net)" link add "v$id$name" type veth peer name eth0 netns "$n"
    ip -n "$(ns net)" link set "v$id$name" master br0 up
    ip -n "$n" addr add "$addr/24" dev eth0
    ip -n "$n" link set eth0 up
    # Names inside the lab: ip netns exec mounts these over /etc/hosts.
    mkdir -p "/etc/netns/$n"
    {
        echo "127.0.0.1 localhost"
        echo "$subnet.42 ha"
        echo "$subnet.2 client"
        echo "$addr $name"
        [ -z "${SHOAL_LAB_HOSTS:-}" ] || printf '%s\n' "$SHOAL_LAB_HOSTS"
    } >"/etc/netns/$n/hosts"
    echo "nameserver 127.0.0.1" >"/etc/netns/$n/resolv.conf"
}

net_up() {
    id=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
    mkdir -p "$state"
    echo "$id" >"$state/id"
    ip netns add "$(ns net)"
    ip -n "$(ns net)" link add br0 type bridge mcast_snooping 0
    ip -n "$(ns net)" link set br0 up
    plug client "$subnet.2"
}

# ---------------------------------------------------------------- boxes

app_cache() {
    sum=$(cat "$here/webapp/app/package-lock.json" "$here/webapp/app/app.js" |
        sha256sum | cut -c1-12)
    dir=$cache/app-$sum
    if ! [ -d "$dir/node_modules" ]; then
        command -v npm >/dev/null || die "npm is needed once, to install" \
            "the app's modules into $dir"
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        cp "$here/webapp/app/app.js" "$here/webapp/app/package.json" \
            "$here/webapp/app/package-lock.json" "$dir.tmp/"
        (cd "$dir.tmp" && npm ci --omit=dev --no-audit --no-fund \
            --loglevel=error >/dev/null) || die "npm ci failed"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

# Start a box: s6-svscan as PID 1 of new PID, mount and UTS namespaces,
# with a private /run, in the box's network namespace.
box_start() {
    local name svc i
    name=$1 svc=$2
    alive "$name" && return 0
    mkdir -p "$state/$name"
    rm -rf "$state/$name/scan"
    mkdir -p "$state/$name/scan"
    cp -R "$svc"/. "$state/$name/scan/"
    PATH="$build:$PATH" SHOAL_CONF="$state/shoal.ini" \
    SHOAL_KEY="$state/discovery.key" APP_DIR="$state/app" \
    SHOAL_LAB_SPOOL="$state/spool" \
    SHOAL_LABEL="${SHOAL_LABEL_PREFIX:-}$name" \
        ip netns exec "$(ns "$name")" unshare --pid --fork --mount \
        --uts --mount-proc sh "$here/replica.sh" _boot "$name" \
        "$state/$name/scan" </dev/null >>"$state/$name/log" 2>&1 &
    echo $! >"$state/$name/unshare.pid"
    i=0
    until alive "$name"; do
        i=$((i + 1))
        [ $i -le 100 ] || die "$name did not start (see $state/$name/log)"
        sleep 0.05
    done
}

# Inside the box (PID 1): hostname, private /run, then s6-svscan.
boot() {
    hostname "$1"
    mount -t tmpfs -o mode=755 tmpfs /run
    exec s6-svscan "$2"
}

node_start() {
    local n
    n=$1
    if ! ip netns list | grep -q "^$(ns "$n")\b"; then
        plug "$n" "$(node_ip "$n")"
    fi
    ip -n "$(ns "$n")" link set eth0 up
    box_start "$n" "$here/webapp/service"
    say "$n started ($(node_ip "$n"))"
}

# Graceful stop, as docker stop: SIGTERM to PID 1, SIGKILL after 10 s.
box_stop() {
    local name p t0 i how
    name=$1
    p=$(init_pid "$name")
    [ -n "$p" ] || { say "$name is not running"; return 0; }
    t0=$(date +%s%N)
    kill -TERM "$p"
    i=0
    while [ -d "/proc/$p" ] && [ $i -lt $((stop_timeout * 20)) ]; do
        sleep 0.05
        i=$((i + 1))
    done
    how="exited"
    if [ -d "/proc/$p" ]; then
        kill -KILL "$p" 2>/dev/null || true
        how="killed after ${stop_timeout}s"
    fi
    say "$name stopped ($how, $((($(date +%s%N) - t0) / 1000000)) ms)"
}

# Lab state from the client: "up total" of backend app, from stats.json.
servers_up() {
    ip netns exec "$(ns client)" curl -s --max-time 1 \
        "http://$subnet.42:1936/stats.json" 2>/dev/null |
        grep -o '"servers_up":[0-9]*' | head -1 | cut -d: -f2
}

# Wait until shoal has $1 nodes up; $2: when the change started (ns).
wait_up() {
    local want i t0
    want=$1 i=0
    t0=${2:-$(date +%s%N)}
    while [ "$(servers_up)" != "$want" ]; do
        i=$((i + 1))
        [ $i -le 300 ] || die "after 30 s shoal has $(servers_up) node(s)" \
            "up, not $want (logs in $state)"
        sleep 0.1
    done
    say "$want node(s) up in shoal ($((($(date +%s%N) - t0) / 1000000)) ms)"
}

running_nodes() {
    for d in "$state"/node*; do
        [ -d "$d" ] || continue
        n=${d##*/}
        alive "$n" && echo "${n#node}"
    done | sort -n
}

# ---------------------------------------------------------------- commands

cmd_up() {
    want=${1:-2}
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
    for c in ip s6-svscan node unshare curl; do
        command -v "$c" >/dev/null || die "$c is missing"
    done
    [ -x "$build/shoal" ] && [ -x "$build/shoal-announce" ] ||
        die "no shoal in $build (meson setup build && ninja -C build)"
    [ ! -e "$state/id" ] || die "a lab already runs at $state (down first)"
    trap 'echo "replica: up failed; cleaning up" >&2; cmd_down >/dev/null 2>&1' EXIT
    mkdir -p "$state"
    ln -sfn "$(app_cache)" "$state/app"
    if [ -n "${SHOAL_LAB_KEY:-}" ]; then
        cp "$SHOAL_LAB_KEY" "$state/discovery.key"
    else
        "$here/keygen" "$state/discovery.key" >/dev/null
    fi
    cp "${SHOAL_LAB_CONF:-$here/shoal.ini}" "$state/shoal.ini"
    mkdir -p "$state/spool"
    net_up
    plug ha "$subnet.42"
    box_start ha "$here/ha/service"
    t0=$(date +%s%N)
    i=1
    while [ $i -le "$want" ]; do
        node_start "node$i"
        i=$((i + 1))
    done
    wait_up "$want" "$t0"
    sh "$0" scaler </dev/null >>"$state/scaler.log" 2>&1 &
    echo $! >"$state/scaler.pid"
    trap - EXIT
    say "lab up in $state: ha $subnet.42 (80, stats 1936, admin 9999)," \
        "client $subnet.2; try: $0 client curl -s ha/"
}

cmd_scale() {
    local want have i n t0
    want=$1
    t0=$(date +%s%N)
    have=$(running_nodes | wc -l)
    if [ "$have" -lt "$want" ]; then
        i=1
        while [ "$(running_nodes | wc -l)" -lt "$want" ]; do
            alive "node$i" || node_start "node$i"
            i=$((i + 1))
        done
    elif [ "$have" -gt "$want" ]; then
        for n in $(running_nodes | sort -rn | head -n $((have - want))); do
            box_stop "node$n" &
        done
        wait
    fi
    wait_up "$want" "$t0"
}

# The scale requests of dist/lab/hooks/replica-scale (from inside the ha
# box, through $state/spool): one at a time, in order; ends with the lab.
cmd_scaler() {
    local f id action have want rc
    while [ -e "$state/id" ]; do
        for f in "$state"/spool/req.*; do
            [ -e "$f" ] || continue
            id=${f##*/req.}
            case "$id" in *.tmp) continue ;; esac
            action=$(cat "$f" 2>/dev/null) || continue
            rm -f "$f"
            have=$(running_nodes | wc -l)
            case "$action" in
            up) want=$((have + 1)) ;;
            down) want=$((have - 1)) ;;
            *) want=$have ;;
            esac
            rc=0
            if [ "$want" -lt "${SHOAL_SCALE_MIN:-1}" ] ||
                [ "$want" -gt "${SHOAL_SCALE_MAX:-8}" ]; then
                echo "at the bound: $have node(s) stay" >"$state/spool/out.$id"
            else
                echo "scale $action: $have -> $want node(s)" >"$state/spool/out.$id"
                (cmd_scale "$want") >>"$state/spool/out.$id" 2>&1 || rc=$?
            fi
            say "scaler: $action: $(tail -1 "$state/spool/out.$id") (status $rc)"
            echo "$rc" >"$state/spool/done.$id"
        done
        sleep 0.2
    done
}

cmd_crash() {
    local n p u i
    n=$(node_name "$1")
    p=$(init_pid "$n")
    [ -n "$p" ] || die "$n is not running"
    kill -KILL "$p"
    # As with docker kill: every process dies (the kernel closes their
    # sockets), then the container's veth goes: later connects get no
    # answer at all.
    u=$(cat "$state/$n/unshare.pid")
    i=0
    while [ -d "/proc/$u" ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
    ip -n "$(ns "$n")" link set eth0 down
    say "$n crashed (SIGKILL to every process)"
}

cmd_down() {
    [ -e "$state/id" ] || { say "no lab at $state"; return 0; }
    p=$(cat "$state/scaler.pid" 2>/dev/null) && kill "$p" 2>/dev/null || true
    for d in "$state"/*/; do
        b=$(basename "$d")
        p=$(init_pid "$b")
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
    done
    for d in "$state"/*/; do
        u=$(cat "$d/unshare.pid" 2>/dev/null) || continue
        i=0
        while [ -d "/proc/$u" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    done
    id=$(lab_id)
    for n in $(ip netns list | awk '{print $1}' | grep "^shl-$id-"); do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$n"
        rm -rf "/etc/netns/$n"
    done
    rm -rf "$state"
    say "lab removed"
}

cmd_status() {
    for n in $(ls -d "$state"/node* 2>/dev/null | sed 's#.*/node##' | sort -n); do
        if alive "node$n"; then s=running; else s=stopped; fi
        echo "node$n $(node_ip "node$n") $s"
    done
    echo "show servers" | ip netns exec "$(ns client)" \
        "$build/shoalctl" -s "$subnet.42:9999" show servers
}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage; exit 2; }
cmd=$1
shift
case "$cmd" in
up)     [ $# -le 1 ] || die "usage: up N"; cmd_up "${1:-2}" ;;
scale)  [ $# -eq 1 ] || die "usage: scale N"; cmd_scale "$1" ;;
crash)  [ $# -eq 1 ] || die "usage: crash NODE"; cmd_crash "$1" ;;
stop)   [ $# -eq 1 ] || die "usage: stop NODE"; box_stop "$(node_name "$1")" ;;
start)  [ $# -eq 1 ] || die "usage: start NODE"; node_start "$(node_name "$1")" ;;
client) [ $# -ge 1 ] || die "usage: client CMD..."
        exec ip netns exec "$(ns client)" "$@" ;;
exec)   [ $# -ge 2 ] || die "usage: exec ha|NODE CMD..."
        b=$1; shift
        [ "$b" = ha ] || b=$(node_name "$b")
        exec ip netns exec "$(ns "$b")" "$@" ;;
status) cmd_status ;;
scaler) cmd_scaler ;;
down)   cmd_down ;;
app-dir) app_cache ;;
_boot)  boot "$1" "$2" ;;
-h|--help|help) usage ;;
*)      die "unknown command '$cmd' (--help)" ;;
esac
