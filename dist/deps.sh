# dist/deps.sh - install what shoal needs from Debian's packages, only if
# something is missing. Sourced by dist/demo.sh, tests/run.sh and bench/run.
# Usage: deps_install build|test|bench|deb|systemd|docker ...

deps_build="gcc libc6-dev meson ninja-build pkg-config libev-dev libssl-dev libinih-dev libc-ares-dev python3"
deps_test="s6 nodejs haproxy nginx-light dnsmasq-base keepalived clang libclang-rt-14-dev python3-pytest curl wrk apache2-utils iproute2 nftables procps openssl util-linux psmisc valgrind chromium prometheus python3-prometheus-client python3-markdown"
# The Debian package (dist/build-deb) and its test under real systemd
# (tests/systemd).
deps_deb="dpkg-dev debhelper lintian cpio"
deps_systemd="debootstrap systemd-container util-linux apache2-utils"
# The lab stack on a private Docker daemon (tests/docker).
deps_docker="docker.io docker-compose debootstrap chromium apache2-utils curl iproute2 util-linux python3-pytest"
deps_bench="haproxy nginx-light libnginx-mod-stream wrk apache2-utils gnuplot-nox procps util-linux"

deps_install() {
    pkgs=""
    for set in "$@"; do
        eval "pkgs=\"\$pkgs \$deps_$set\""
    done
    missing=""
    for p in $pkgs; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages:$missing (run as root, or install them)" >&2
        return 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
