#!/bin/sh
# tests/docker/base-image.sh - make a debian:12 equivalent without a
# registry: debootstrap bookworm (minbase) once, keep the root file system
# as a tarball in a cache outside git, and `docker import` it under a tag
# the lab Dockerfiles take as their BASE default.
#
# Usage: base-image.sh [TAG]          (docker must reach a daemon: DOCKER_HOST)
# Environment: SHOAL_CACHE (default /var/cache/shoal-test),
#              SHOAL_MIRROR (default http://deb.debian.org/debian).
set -eu
TAG=${1:-shoal-lab/debian:12}
CACHE=${SHOAL_CACHE:-/var/cache/shoal-test}
MIRROR=${SHOAL_MIRROR:-http://deb.debian.org/debian}
TARBALL=$CACHE/debian-bookworm-minbase.tar

if [ ! -s "$TARBALL" ]; then
    mkdir -p "$CACHE"
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT INT TERM
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
        tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # What the official image adds: updates and security sources, no
    # cached .debs or package lists left in layers, no recommends.
    cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
    printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/99no-recommends"
    printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n' \
        >"$root/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$root"
    trap - EXIT INT TERM
fi

if ! docker image inspect "$TAG" >/dev/null 2>&1; then
    docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' "$TARBALL" "$TAG" >/dev/null
fi
echo "$TAG"
