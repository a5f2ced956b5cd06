#!/usr/bin/env bash
# `make bench-reference`: sigsweep's training against our own PyTorch
# references, side by side in one invocation, threads pinned equal, printing
# per-epoch times, peak memory and the ratio:
#
# * MM-DFN (benches/reference/mmdfn_train.py) on one IEMOCAP-format file
#   (tests/python/iemocap_file.py --preset iemocap: IEMOCAP's 120 training
#   dialogues, its feature dims and dialogue lengths), per batch size;
# * FD-CMDIE (benches/reference/fdcmdie_train.py) on one MMSA-format file
#   (tests/python/mmsa_file.py --preset mosi: MOSI's shapes, text 50x768,
#   audio 375x5, vision 500x20), batch 32, with MOSI_TRAIN training samples
#   (default 128: a full MOSI epoch of sigsweep's FD-CMDIE takes minutes).
#
# Environment: TORCH_PYTHON (a Python with torch and numpy), SIGSWEEP (the
# release binary), THREADS (default 1), EPOCHS (default 3; the first epoch
# is warm-up and left out of the steady figure), BATCHES (MM-DFN batch
# sizes, default "16 32"), MODELS (default "mmdfn fdcmdie"), MOSI_TRAIN,
# DEVICE (cpu, the default, or cuda: both sides on the GPU, the reference
# with --device cuda and sigsweep with --backend cuda; the GPU's peak memory
# is printed beside the RSS; .ci/device/verify.sh reference runs it),
# TOGETHER (cpu only; 0, the default: the reference, then sigsweep; 1: both
# at once, the reference pinned to CPUs 0..THREADS-1 and sigsweep to the
# next THREADS, so that a drift of the machine's speed (±5 % between runs on
# a shared VM) falls on both sides alike; sigsweep then trains OURS_EPOCHS,
# default 2 × EPOCHS, so that its steady epochs overlap the reference's).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${TORCH_PYTHON:-python3}
SIGSWEEP=${SIGSWEEP:-$PWD/target/release/sigsweep}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-3}
BATCHES=${BATCHES:-16 32}
MODELS=${MODELS:-mmdfn fdcmdie}
MOSI_TRAIN=${MOSI_TRAIN:-128}
DEVICE=${DEVICE:-cpu}
TOGETHER=${TOGETHER:-0}
case $TOGETHER in
0) OURS_EPOCHS=${OURS_EPOCHS:-$EPOCHS} ;;
1)
    OURS_EPOCHS=${OURS_EPOCHS:-$((2 * EPOCHS))}
    if [ "$DEVICE" != cpu ] || [ "$(nproc)" -lt $((2 * THREADS)) ] || ! command -v taskset >/dev/null; then
        echo "bench-reference: TOGETHER=1 needs DEVICE=cpu, 2 x THREADS CPUs and taskset" >&2
        exit 1
    fi
    ;;
*)
    echo "bench-reference: TOGETHER must be 0 or 1, not $TOGETHER" >&2
    exit 1
    ;;
esac
case $DEVICE in
cpu | cuda) ;;
*)
    echo "bench-reference: DEVICE must be cpu or cuda, not $DEVICE" >&2
    exit 1
    ;;
esac
"$PY" -c 'import torch, numpy' || { echo "bench-reference: $PY has no torch" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); threads $THREADS each; $EPOCHS epochs (steady = epochs 2..)"
if [ "$TOGETHER" = 1 ]; then
    echo "together: both at once, reference on CPUs 0-$((THREADS - 1)), sigsweep on $THREADS-$((2 * THREADS - 1)) for $OURS_EPOCHS epochs"
fi
echo "torch: $("$PY" -c 'import torch; print(torch.__version__)'); sigsweep: $("$SIGSWEEP" --version); device: $DEVICE"
if [ "$DEVICE" = cuda ]; then
    "$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print("GPU:", torch.cuda.get_device_name(0))'
fi

# Prints one side-by-side block from the two JSON objects.
compare() {
    "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
ref, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
unit = "utt" if ref["model"] == "mmdfn" else "samples"
def row(name, epochs, steady, rate, rss, gpu):
    gpu = "" if gpu is None else f" | peak GPU memory {gpu:6.0f} MiB"
    print(f"  {name:<28} epochs {' '.join(f'{t:6.2f}' for t in epochs)} s | steady {steady:6.2f} s/epoch, {rate:7.2f} {unit}/s | peak RSS {rss:6.0f} MiB{gpu}")
row(ref["implementation"], ref["epoch_seconds"], ref["seconds_per_epoch"], ref["samples_per_second"], ref["peak_rss_mib"], ref.get("peak_gpu_mib"))
row("sigsweep bench train", ours["epoch_seconds"], ours["seconds_per_epoch"], ours["samples_per_second"], ours["peak_rss_mib"], ours.get("gpu_peak_memory_mib"))
n_ref = ref.get("utterances_per_epoch", ref.get("samples_per_epoch"))
print(f"  {unit} per epoch: reference {n_ref}, sigsweep {ours['samples_per_epoch']}")
print(f"  ratio (sigsweep / reference {unit} per second): {ours['samples_per_second'] / ref['samples_per_second']:.2f}x")
PYEOF
}

ours() {
    local pin=()
    if [ "$TOGETHER" = 1 ]; then
        pin=(taskset -c "$THREADS-$((2 * THREADS - 1))")
    fi
    MATMUL_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS "${pin[@]}" "$SIGSWEEP" bench train \
        --epochs "$OURS_EPOCHS" --threads "$THREADS" --backend "$DEVICE" --json "$@"
}

# Runs the reference command (its arguments) and then `ours` with the
# arguments after `--`, or both at once with TOGETHER=1, and compares them.
race() {
    local ref_args=() arg
    while [ $# -gt 0 ]; do
        arg=$1
        shift
        [ "$arg" = -- ] && break
        ref_args+=("$arg")
    done
    if [ "$TOGETHER" = 1 ]; then
        taskset -c "0-$((THREADS - 1))" "$PY" "${ref_args[@]}" >"$work/ref.json" &
        local pid=$!
        ours "$@" >"$work/ours.json"
        wait "$pid"
        compare "$(cat "$work/ref.json")" "$(cat "$work/ours.json")"
    else
        local ref
        ref=$("$PY" "${ref_args[@]}")
        compare "$ref" "$(ours "$@")"
    fi
}

for model in $MODELS; do
    case $model in
    mmdfn)
        "$PY" tests/python/iemocap_file.py "$work/iemocap.pkl" --preset iemocap
        for b in $BATCHES; do
            echo
            echo "== mmdfn, IEMOCAP shapes, batch $b =="
            race benches/reference/mmdfn_train.py "$work/iemocap.pkl" --batch-size "$b" \
                --epochs "$EPOCHS" --threads "$THREADS" --device "$DEVICE" --json \
                -- --model mmdfn --dataset "iemocap:$work/iemocap.pkl" --param "batch_size=$b"
        done
        ;;
    fdcmdie)
        "$PY" tests/python/mmsa_file.py "$work/mosi.pkl" --preset mosi --train "$MOSI_TRAIN"
        echo
        echo "== fdcmdie, MOSI shapes ($MOSI_TRAIN training samples), batch 32, k_cl 10, all pairs =="
        race benches/reference/fdcmdie_train.py "$work/mosi.pkl" --epochs "$EPOCHS" \
            --threads "$THREADS" --device "$DEVICE" --json \
            -- --model fdcmdie --dataset "mmsa:$work/mosi.pkl"
        if [ "$MOSI_TRAIN" -lt 1284 ]; then
            echo "  note: sigsweep encodes each distinct sample of a batch once; with $MOSI_TRAIN training samples the"
            echo "  anchors' sets overlap more than on MOSI's 1284, which favours sigsweep (MOSI_TRAIN=1284 for that figure)"
        fi
        ;;
    *)
        echo "bench-reference: unknown model $model (mmdfn, fdcmdie)" >&2
        exit 1
        ;;
    esac
done
