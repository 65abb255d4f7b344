#!/bin/sh
# tests/run.sh - install what is missing, build shoal (normal with
# -Werror, with ASan+UBSan, with ThreadSanitizer), and run the suite:
# unit tests (meson test) and integration tests (pytest driving the real
# binaries). Prints "N passed, N failed" last; exits non-zero on failure.
#
# Environment: SHOAL_TEST_ASAN=0 skips the ASan+UBSan pass,
# SHOAL_TEST_TSAN=0 the ThreadSanitizer pass and SHOAL_TEST_FUZZ=0 the
# bounded fuzz runs (for quick local runs; CI always runs all three).
# The slower suites run too (CI included): the Debian package under a
# real systemd (tests/systemd: builds the package, boots it in a container;
# the first run makes a Debian 12 rootfs with debootstrap, cached in
# /var/cache/shoal-test) and the lab stack on a real, private Docker daemon
# (tests/docker: builds both images, 8-12 minutes). SHOAL_TEST_SYSTEMD=0
# and SHOAL_TEST_DOCKER=0 skip them for quick local runs.
# Extra arguments go to pytest (e.g. -k relay).
set -eu
cd "$(dirname "$0")/.."
. dist/deps.sh
deps_install build test

ROOT=$(pwd)
ART="$ROOT/tests/artifacts"
mkdir -p "$ART"
passed=0
failed=0

setup() {  # setup DIR MESON-ARGS...
    dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" -Dwerror=true "$@" >"$ART/setup-$(basename "$dir").log"
    fi
    ninja -C "$dir"
}

count_junit() {  # count_junit FILE -> adds to passed/failed
    set -- $(/usr/bin/python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    r = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
suites = [r] if r.tag == "testsuite" else list(r)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f + sk)
PY
)
    passed=$((passed + $1))
    failed=$((failed + $2))
}

run_pass() {  # run_pass NAME BUILD-DIR [pytest args]; $PASS_TESTS: which
    name=$1; dir=$2; shift 2
    echo "=== $name: unit tests ($dir)"
    if meson test -C "$dir" --suite unit --print-errorlogs --logbase "unit-$name"; then :; fi
    count_junit "$dir/meson-logs/unit-$name.junit.xml"
    echo "=== $name: integration tests ($dir)"
    SHOAL_BUILD="$ROOT/$dir" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        --junitxml="$ART/integration-$name.xml" "$@" \
        ${PASS_TESTS:-tests/integration} || true
    count_junit "$ART/integration-$name.xml"
}

setup build --buildtype=debugoptimized
run_pass normal build "$@"

if [ "${SHOAL_TEST_ASAN:-1}" != 0 ]; then
    setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
    # valgrind cannot run ASan binaries: its tests run in the normal pass.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_pass asan build-asan -m "not valgrind" "$@"
fi

# ThreadSanitizer where threads meet: reload, admin commands, balancing
# and limits change pools, servers and settings while the workers relay;
# client policies (access lists, per-source tables) are swapped by reloads;
# TLS contexts are swapped by reloads while workers make SSLs from them;
# effective weights, faults and the queue gauge are read by workers while
# the control loop changes them.
if [ "${SHOAL_TEST_TSAN:-1}" != 0 ]; then
    setup build-tsan --buildtype=debug -Db_sanitize=thread -Db_lundef=false
    T=tests/integration
    TSAN_OPTIONS=halt_on_error=0 \
    PASS_TESTS="$T/test_reload.py $T/test_admin.py $T/test_balance.py $T/test_lifecycle.py $T/test_limits.py $T/test_clientid.py $T/test_send_proxy.py $T/test_tls.py $T/test_weights.py $T/test_fault.py $T/test_scale.py" \
        run_pass tsan build-tsan -m "not valgrind" "$@"
fi

# Bounded libFuzzer runs (clang): the announcement decoder, the config
# loader and its value parsers, 30 s each.
if [ "${SHOAL_TEST_FUZZ:-1}" != 0 ]; then
    echo "=== fuzz (build-fuzz, clang)"
    if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz --buildtype=debug >"$ART/setup-build-fuzz.log"
    fi
    ninja -C build-fuzz
    if meson test -C build-fuzz --suite fuzz --print-errorlogs --logbase fuzz; then :; fi
    count_junit build-fuzz/meson-logs/fuzz.junit.xml
fi

if [ "${SHOAL_TEST_SYSTEMD:-1}" = 1 ]; then
    deps_install deb systemd
    echo "=== systemd: the Debian package in a booted Debian 12 container"
    /usr/bin/python3 -m pytest -q -rP -p no:cacheprovider \
        --junitxml="$ART/systemd.xml" tests/systemd || true
    count_junit "$ART/systemd.xml"
fi

# The lab stack on Docker (dist/lab): images built from a debootstrapped
# Debian 12, compose.yaml run by a private dockerd in its own network
# namespace. Slow (see tests/docker/README.md): SHOAL_TEST_DOCKER=0 skips it.
if [ "${SHOAL_TEST_DOCKER:-1}" = 1 ]; then
    deps_install docker
    echo "=== docker: the lab stack (tests/docker)"
    SHOAL_TEST_DOCKER=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        --junitxml="$ART/docker.xml" tests/docker || true
    count_junit "$ART/docker.xml"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
