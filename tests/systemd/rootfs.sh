#!/bin/sh
# tests/systemd/rootfs.sh - make (once) and print the path of a cached
# Debian 12 root file system that boots under systemd-nspawn.
#
# The cache lives outside git, in $SHOAL_ROOTFS_CACHE (default
# /var/cache/shoal-test), keyed by the month and by a hash of the package
# list: a new month or a changed list makes a new one, older ones are
# removed. Built with debootstrap --variant=minbase (no procps, so no
# /bin/kill) plus systemd and what the tests run inside the container.
# shoal's own run-time libraries are included so that installing the
# package needs no network once the container is booted (the upgrade
# test); apt-get still resolves them from Debian's package lists.
set -eu

SUITE=bookworm
MIRROR=${SHOAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SHOAL_ROOTFS_CACHE:-/var/cache/shoal-test}
# systemd as init; ab and python3 (backends, demo-backend.py) for the
# tests; the libraries shoal links against.
PKGS="systemd,systemd-sysv,dbus,apache2-utils,python3,curl,libev4,libssl3,libinih1,libc-ares2,ca-certificates"

key="$SUITE-$(date -u +%Y%m)-$(printf '%s %s' "$PKGS" "$MIRROR" | sha256sum | cut -c1-12)"
dir="$CACHE/rootfs-$key"
if [ -f "$dir/.complete" ]; then
    echo "$dir"
    exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$dir/.complete" ]; then
    echo "$dir"
    exit 0
fi
tmp="$dir.tmp"
rm -rf "$tmp"
echo "rootfs: debootstrap $SUITE into $tmp (cached as $dir)" >&2
debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap-$key.log" 2>&1 || {
    echo "rootfs: debootstrap failed, see $CACHE/debootstrap-$key.log" >&2
    exit 1
}
# Package lists, so apt-get install ./shoal_*.deb resolves dependencies.
cat >"$tmp/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
SRC
chroot "$tmp" apt-get update -qq >>"$CACHE/debootstrap-$key.log" 2>&1
chroot "$tmp" apt-get clean
echo shoal-test >"$tmp/etc/hostname"
# Root logs in on the console without a password (the container has no
# network and is only reached with nsenter).
chroot "$tmp" passwd -d root >/dev/null
# Nothing in the container needs these at boot.
for u in systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
         apt-daily.timer apt-daily-upgrade.timer; do
    chroot "$tmp" systemctl mask "$u" >/dev/null 2>&1 || true
done
touch "$tmp/.complete"
# Older caches (another month, another package list) go.
for old in "$CACHE"/rootfs-*; do
    [ "$old" = "$dir" ] || [ "$old" = "$tmp" ] || rm -rf "$old"
done
mv "$tmp" "$dir"
echo "$dir"
