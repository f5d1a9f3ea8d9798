#!/usr/bin/env bash
# Build a Python base image with no registry: debootstrap a Debian bookworm rootfs (python3, venv,
# CA certificates) from this machine's apt mirror, then `docker import` it.
#
#   sudo scripts/make_local_base.sh [TAG]        # default tag: medpipes/local-base:bookworm
#
# Idempotent: does nothing when the tag exists. Environment: DOCKER (client, default docker),
# MEDPIPES_BASE_MIRROR (apt mirror URL; default: the first bookworm URI in /etc/apt/sources.list*),
# MEDPIPES_BASE_WORKDIR (where the rootfs is made; default build/local-base, removed afterwards).
set -euo pipefail

TAG="${1:-medpipes/local-base:bookworm}"
DOCKER="${DOCKER:-docker}"
SUITE=bookworm
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKDIR="${MEDPIPES_BASE_WORKDIR:-$HERE/build/local-base}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "make_local_base: $TAG exists; nothing to do"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "error: debootstrap needs root; run this script as root (or with sudo)" >&2
    exit 2
fi
if ! command -v debootstrap >/dev/null; then
    echo "error: debootstrap is not installed; apt-get install -y debootstrap" >&2
    exit 2
fi

mirror="${MEDPIPES_BASE_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    # deb822 sources (URIs: ...) first, then one-line sources (deb URL bookworm main).
    mirror="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
fi
if [[ -z "$mirror" ]]; then
    mirror="$(awk '$1 == "deb" && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
fi
if [[ -z "$mirror" ]]; then
    echo "error: no Debian mirror found in /etc/apt/sources.list*; set MEDPIPES_BASE_MIRROR=http://deb.debian.org/debian" >&2
    exit 2
fi

rootfs="$WORKDIR/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"
trap 'rm -rf "$rootfs"' EXIT
echo "make_local_base: debootstrap $SUITE from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$mirror"
# Slim the rootfs: package lists, caches, docs and man pages are not needed at run time.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG"
echo "make_local_base: built $TAG"
