#!/usr/bin/env bash
# Two sigsweep binaries side by side: both train the same model on the same
# file at the same time, one pinned to CPU 0 and one to CPU 1, the cores
# swapped every round, so that a drift of a shared machine's speed falls on
# both alike. Prints each round's last-epoch time and loss of both and
# new/old (below 1: the new binary is faster). CPU only; needs 2 CPUs and
# taskset.
#
#   bash benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS=4] [EPOCHS=3] [DATASET=synthetic-mosi]
#
# Environment: MODEL (default fdcmdie). DATASET is any `bench train
# --dataset` value (e.g. mmsa:/tmp/mosi128.pkl).
set -euo pipefail
old=$1 new=$2 rounds=${3:-4} epochs=${4:-3} dataset=${5:-synthetic-mosi}
model=${MODEL:-fdcmdie}
command -v taskset >/dev/null || { echo "ab.sh: needs taskset" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "ab.sh: needs 2 CPUs" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
last() {
    python3 -c 'import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(d["epoch_seconds"][-1], d["epoch_losses"][-1])' "$1"
}
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then co=0 cn=1; else co=1 cn=0; fi
    for side in old new; do
        bin=$old core=$co
        [ $side = new ] && bin=$new core=$cn
        taskset -c "$core" "$bin" bench train --model "$model" --dataset "$dataset" \
            --epochs "$epochs" --threads 1 --json >"$out/$side.json" 2>"$out/$side.err" &
    done
    wait
    for side in old new; do
        [ -s "$out/$side.json" ] || { echo "ab.sh: the $side binary failed:" >&2; cat "$out/$side.err" >&2; exit 1; }
    done
    read -r ot ol <<<"$(last "$out/old.json")"
    read -r nt nl <<<"$(last "$out/new.json")"
    python3 -c 'import sys
r, co, ot, ol, nt, nl = sys.argv[1:]
print(f"round {r} (old on CPU {co}): old {float(ot):.3f} s, loss {ol} | new {float(nt):.3f} s, loss {nl} | new/old {float(nt) / float(ot):.3f}")' \
        "$r" "$co" "$ot" "$ol" "$nt" "$nl"
done
