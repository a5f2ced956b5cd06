#!/usr/bin/env bash
# `make test-pytorch`: the checks that need PyTorch (several GB with its
# CUDA wheels, so not part of `make test`).
#
# 1. A small IEMOCAP-format file (tests/python/iemocap_file.py).
# 2. A real `sigsweep run` of `mmdfn` on it that saves weights and
#    predictions (MM-DFN's padded recurrences, its batch size 32), at 4 and
#    16 graph layers, 2 seeds each.
# 3. For every trial: `sigsweep predict` on its weights file writes exactly
#    the trial's predictions file, and the weights load with
#    `load_state_dict(strict=True)` into our own PyTorch MM-DFN
#    (tests/python/mmdfn_torch.py), whose log-probabilities on the test
#    split match the trial's to 1e-4.
# 4. examples/pytorch-erc swept through `[model] name = "command"`, and
#    trained with DDP under torchrun (2 CPU processes, gloo).
# 5. The FD-CMDIE speed reference and `sigsweep bench train` on one small
#    MMSA-format file (tests/python/mmsa_file.py).
#
# Environment: TORCH_PYTHON (a Python with torch and numpy), SIGSWEEP (the
# release binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${TORCH_PYTHON:-python3}
# A relative path is made absolute: the checks run from tests/python.
if [[ "$PY" == */* ]]; then
    PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
fi
SIGSWEEP=${SIGSWEEP:-$PWD/target/release/sigsweep}
"$PY" -c 'import torch, numpy' || { echo "test-pytorch: $PY has no torch" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 tests/python/iemocap_file.py "$work/iemocap.pkl" --train 16 --test 8
cat >"$work/sweep.toml" <<TOML
name = "mmdfn-pytorch-parity"
seeds = 2
baseline = { layers = 16 }
[model]
name = "mmdfn"
speaker_weights = "3-0-1"
rnn_padding = "unpacked"
[dataset]
kind = "iemocap"
path = "$work/iemocap.pkl"
params = { valid_rate = 0.2 }
[training]
epochs = 2
batch_size = 32
lr = 0.0003
weight_decay = 0.0001
save = ["weights", "predictions"]
[grid]
layers = [4, 16]
[metrics]
select = "f1_weighted"
report = { f1_weighted = "max" }
[resources]
gpus_per_trial = 0
TOML
"$SIGSWEEP" run "$work/sweep.toml" --state-dir "$work/state" >"$work/run.log" 2>&1 || {
    tail -n 40 "$work/run.log"
    exit 1
}
n=0
for w in "$work"/state/artifacts/weights/*.safetensors; do
    id=$(basename "$w" .safetensors)
    stored="$work/state/artifacts/predictions/$id.jsonl"
    "$SIGSWEEP" predict "$w" --out "$work/predicted-$id.jsonl" >/dev/null
    cmp "$work/predicted-$id.jsonl" "$stored"
    echo -n "$id: sigsweep predict = stored predictions; "
    (cd tests/python && "$PY" check_mmdfn_weights.py "$w" "$stored" "$work/iemocap.pkl")
    n=$((n + 1))
done
[ "$n" -eq 4 ] || { echo "expected 4 weights files, found $n" >&2; exit 1; }
echo "test-pytorch: mmdfn weights PASS ($n trials)"

# 5. The FD-CMDIE speed reference (benches/reference/fdcmdie_train.py) and
#    sigsweep read the same small MMSA-format file and train one epoch.
"$PY" tests/python/mmsa_file.py "$work/mosi.pkl" --train 24 --valid 8 --test 8
"$PY" benches/reference/fdcmdie_train.py "$work/mosi.pkl" --epochs 1 --k-cl 3 --json >"$work/fd.json"
"$SIGSWEEP" bench train --model fdcmdie --dataset "mmsa:$work/mosi.pkl" --epochs 1 \
    --param width=16 --param heads=2 --param layers=1 --param k_cl=3 --json >"$work/fd-ours.json"
"$PY" - "$work/fd.json" "$work/fd-ours.json" <<'PYEOF'
import json, math, sys
ref, ours = (json.load(open(p)) for p in sys.argv[1:])
assert ref["samples_per_epoch"] == ours["samples_per_epoch"] == 24, (ref, ours)
assert math.isfinite(ref["seconds_per_epoch"]) and ref["seconds_per_epoch"] > 0
PYEOF
echo "test-pytorch: fdcmdie reference PASS"
# 4. A researcher's own PyTorch script as a sweep (`name = "command"`):
#    examples/pytorch-erc through configs/command-pytorch.toml, then under
#    launcher = "torchrun" with 2 CPU processes (DDP over gloo).
TORCH_PYTHON="$PY" ${CARGO:-cargo} test --release --locked --test command \
    the_pytorch_example_sweeps_and_trains_with_torchrun -- --nocapture
echo "test-pytorch: PASS"
