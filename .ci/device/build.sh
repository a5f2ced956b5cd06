#!/usr/bin/env bash
# Builds, on this (CPU) machine, what a GPU session carries to the device
# machine (it has no network, so it cannot fetch crates or build there):
#
#   .ci/device/build.sh        # → .device-bin/sigsweep, .device-bin/cuda-tests
#
# Both are stripped x86-64 executables built with `--features cuda` in their
# own target directory (a feature switch would otherwise rebuild burn in
# `target/`). Carry one per call (the carry limit is 64 MiB):
#   run(command=".ci/device/verify.sh tests", carry=[".device-bin/cuda-tests"])
#   run(command=".ci/device/verify.sh mmic",  carry=[".device-bin/sigsweep"])
#
# With FUSION=1 it also builds the same code with burn's kernel fusion
# (`--features cuda-fusion`, in the target directory `…-fusion`: burn
# rebuilds) and packs both binaries, gzipped, into
# .device-bin/fusion-pair.tar.gz (about 30 MB: both fit one carry):
#   run(command=".ci/device/verify.sh fusion", carry=[".device-bin/fusion-pair.tar.gz"])
#
# It also packs everything it built, gzipped, into .device-bin/all.tar.gz
# (about 40 MB with FUSION=1): one carry for any parts, which verify.sh
# runs one after the other in one call (a machine released between calls
# costs minutes to start again):
#   run(command=".ci/device/verify.sh tests reference fusion", carry=[".device-bin/all.tar.gz"])
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../targets/cuda}
cargo build --release --locked --features cuda -p sigsweep
test_bin=$(cargo test --release --locked --features cuda -p sigsweep-worker --test cuda --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda":
        print(m["executable"])')
mkdir -p .device-bin
strip -o .device-bin/sigsweep "$CARGO_TARGET_DIR/release/sigsweep"
strip -o .device-bin/cuda-tests "$test_bin"
if [ "${FUSION:-0}" = 1 ]; then
    CARGO_TARGET_DIR=$CARGO_TARGET_DIR-fusion cargo build --release --locked --features cuda-fusion -p sigsweep
    strip -o .device-bin/sigsweep-fusion "$CARGO_TARGET_DIR-fusion/release/sigsweep"
    tar -C .device-bin -czf .device-bin/fusion-pair.tar.gz sigsweep sigsweep-fusion
fi
all=(sigsweep cuda-tests)
if [ "${FUSION:-0}" = 1 ]; then
    all+=(sigsweep-fusion)
fi
tar -C .device-bin -czf .device-bin/all.tar.gz "${all[@]}"
rm -f .device-bin/sigsweep-fusion
ls -la .device-bin
