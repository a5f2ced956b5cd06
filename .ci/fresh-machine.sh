#!/usr/bin/env bash
# Proves that README's two commands work on a fresh machine.
#
#   sudo .ci/fresh-machine.sh [WORKDIR]        # default /var/tmp/sigsweep-fresh
#
# Builds a minimal Debian 12 root (debootstrap --variant=minbase, from the
# Debian registry this machine's apt uses) holding only what README assumes
# of a fresh machine: build-essential, git, ca-certificates, python3, and a
# Rust toolchain (this machine's rustup home under a copy-on-write overlay,
# its proxies bind-mounted read-only; the cargo registry starts empty, so
# every crate comes from the registry again).
# Copies in the host's resolver, CA certificates and package-client
# configuration (apt sources and options, pip.conf) so the root reaches the
# same registries, then clones this repository (HEAD, committed work only)
# with ../shared beside it and runs, as README says:
#
#   make quickstart
#   make test
#
# Too slow for every CI run (a cold build of the whole workspace): run it
# whenever an install step changes and record the result with its wall time
# in BENCHMARKS.md. Exits non-zero if either command fails; the output of
# each is in WORKDIR/logs/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SHARED="$(cd "$REPO/../shared" 2>/dev/null && pwd || true)"
WORK="${1:-/var/tmp/sigsweep-fresh}"
ROOT="$WORK/root"
LOGS="$WORK/logs"
SUITE=bookworm
RUSTUP_HOME_HOST="${RUSTUP_HOME:-$HOME/.rustup}"
CARGO_BIN_HOST="${CARGO_HOME:-$HOME/.cargo}/bin"

[ "$(id -u)" -eq 0 ] || { echo "fresh-machine: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
[ -d "$RUSTUP_HOME_HOST/toolchains" ] || { echo "fresh-machine: no rustup toolchains in $RUSTUP_HOME_HOST" >&2; exit 2; }
[ -n "$SHARED" ] || { echo "fresh-machine: ../shared beside the repository is missing" >&2; exit 2; }

# The mirror this machine's apt uses (deb822 or one-line sources).
mirror=$(grep -hoE '^URIs: *\S+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -l "${mounts[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
bind() { # bind SRC DST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounts+=("$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# Leftovers of an earlier run (its mounts are gone with its process).
if [ -d "$ROOT" ]; then
    for m in $(awk -v r="$ROOT" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
    rm -rf "$ROOT"
fi
mkdir -p "$ROOT" "$LOGS"

start=$(date +%s)
echo "fresh-machine: debootstrap $SUITE from $mirror into $ROOT" >&2
debootstrap --variant=minbase --include=build-essential,git,ca-certificates,python3 \
    "$SUITE" "$ROOT" "$mirror" >"$LOGS/debootstrap.log" 2>&1 \
    || { tail -n 30 "$LOGS/debootstrap.log" >&2; exit 1; }
boot=$(( $(date +%s) - start ))

# What every installed Debian has and debootstrap leaves out: /etc/hosts
# (`localhost` must resolve). Then the host's resolver, CA bundle and
# package clients' configuration.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
rm -f "$ROOT/etc/apt/sources.list"
cp -L /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp -L /etc/apt/sources.list "$ROOT/etc/apt/sources.list"
for f in /etc/apt/apt.conf.d/99*; do [ -f "$f" ] && cp -L "$f" "$ROOT/etc/apt/apt.conf.d/"; done
[ -f /etc/pip.conf ] && cp -L /etc/pip.conf "$ROOT/etc/pip.conf"

bind /proc "$ROOT/proc"
bind /sys "$ROOT/sys"
bind /dev "$ROOT/dev"
bind /dev/pts "$ROOT/dev/pts"
mkdir -p "$ROOT/dev/shm"
# The Rust toolchain at rustup's usual place (its toolchain links may be
# absolute paths there): this machine's rustup home under a copy-on-write
# overlay, so rustup in the root may write (temp files, settings) and the
# host's toolchains stay untouched.
mkdir -p "$ROOT/root/.rustup" "$WORK/rustup-upper" "$WORK/rustup-work"
rm -rf "$WORK/rustup-upper"/* "$WORK/rustup-work"/*
mount -t overlay overlay \
    -o "lowerdir=$RUSTUP_HOME_HOST,upperdir=$WORK/rustup-upper,workdir=$WORK/rustup-work" \
    "$ROOT/root/.rustup"
mounts+=("$ROOT/root/.rustup")
# rustup's layout: the proxies in ~/.cargo/bin, the registry beside them
# (empty, written by this run).
mkdir -p "$ROOT/root/.cargo"
bind "$CARGO_BIN_HOST" "$ROOT/root/.cargo/bin" ro

# A clean clone (committed work only) with ../shared beside it.
mkdir -p "$ROOT/work"
git clone -q "$REPO" "$ROOT/work/sigsweep"
cp -a "$SHARED" "$ROOT/work/shared"

run_in_root() { # run_in_root NAME COMMAND
    local name=$1 cmd=$2 t0 rc
    t0=$(date +%s)
    set +e
    chroot "$ROOT" /usr/bin/env -i \
        HOME=/root USER=root TERM=dumb LANG=C.UTF-8 \
        RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c "cd /work/sigsweep && $cmd" >"$LOGS/$name.log" 2>&1
    rc=$?
    set -e
    echo "$name: rc=$rc, $(( $(date +%s) - t0 )) s (log: $LOGS/$name.log)"
    return $rc
}

status=0
echo "fresh-machine: root ready in ${boot} s; running README's commands" >&2
run_in_root quickstart "make quickstart" || status=1
if [ $status -eq 0 ]; then
    run_in_root test "make test" || status=1
fi
[ $status -eq 0 ] || { echo "--- last lines of the failing log:" >&2; tail -n 40 "$(ls -t "$LOGS"/*.log | head -n1)" >&2; }
echo "fresh-machine: $( [ $status -eq 0 ] && echo PASS || echo FAIL ) in $(( $(date +%s) - start )) s (debootstrap ${boot} s)"
exit $status
