#!/usr/bin/env bash
# `make bench-reference`: sigsweep's training against our own PyTorch
# reference, side by side in one invocation, on the same IEMOCAP-format file
# (tests/python/iemocap_file.py --preset iemocap: IEMOCAP's 120 training
# dialogues, its feature dims and dialogue lengths), threads pinned equal.
# Prints per-epoch times, peak memory and the ratio for each batch size.
#
# Environment: TORCH_PYTHON (a Python with torch and numpy), SIGSWEEP (the
# release binary), THREADS (default 1), EPOCHS (default 3; the first epoch
# is warm-up and left out of the steady figure), BATCHES (default "16 32").
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${TORCH_PYTHON:-python3}
SIGSWEEP=${SIGSWEEP:-$PWD/target/release/sigsweep}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-3}
BATCHES=${BATCHES:-16 32}
"$PY" -c 'import torch, numpy' || { echo "bench-reference: $PY has no torch" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" tests/python/iemocap_file.py "$work/iemocap.pkl" --preset iemocap
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); threads $THREADS each; $EPOCHS epochs (steady = epochs 2..)"
echo "torch: $("$PY" -c 'import torch; print(torch.__version__)'); sigsweep: $("$SIGSWEEP" --version)"
for b in $BATCHES; do
    echo
    echo "== mmdfn, IEMOCAP shapes, batch $b =="
    ref=$("$PY" benches/reference/mmdfn_train.py "$work/iemocap.pkl" --batch-size "$b" --epochs "$EPOCHS" --threads "$THREADS" --json)
    ours=$(MATMUL_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS "$SIGSWEEP" bench train --model mmdfn \
        --dataset "iemocap:$work/iemocap.pkl" --epochs "$EPOCHS" --threads "$THREADS" \
        --param "batch_size=$b" --json)
    "$PY" - "$ref" "$ours" <<'PYEOF'
import json, sys
ref, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def row(name, epochs, steady, rate, rss):
    print(f"  {name:<28} epochs {' '.join(f'{t:6.2f}' for t in epochs)} s | steady {steady:6.2f} s/epoch, {rate:7.1f} utt/s | peak RSS {rss:6.0f} MiB")
row(ref["implementation"], ref["epoch_seconds"], ref["seconds_per_epoch"], ref["samples_per_second"], ref["peak_rss_mib"])
row("sigsweep bench train", ours["epoch_seconds"], ours["seconds_per_epoch"], ours["samples_per_second"], ours["peak_rss_mib"])
print(f"  utterances per epoch: reference {ref['utterances_per_epoch']}, sigsweep {ours['samples_per_epoch']}")
print(f"  ratio (sigsweep / reference utterances per second): {ours['samples_per_second'] / ref['samples_per_second']:.2f}x")
PYEOF
done
