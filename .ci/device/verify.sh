#!/usr/bin/env bash
# GPU verification (issue #7.5) on the device machine, in parts that each fit
# one device call (≤ 10 min). Build first, here: .ci/device/build.sh.
#
#   .ci/device/verify.sh tests     # carry .device-bin/cuda-tests: CUDA equivalence
#   .ci/device/verify.sh mmic      # carry .device-bin/sigsweep: MMIC four modes
#   .ci/device/verify.sh fdcmdie   # carry .device-bin/sigsweep: FD-CMDIE four modes
#   .ci/device/verify.sh attention # carry .device-bin/sigsweep: FD-CMDIE with the
#                                  # recomputing attention node and with burn's
#                                  # composite attention (time, GPU memory)
#   .ci/device/verify.sh packing   # carry .device-bin/sigsweep: end-to-end slots
#   .ci/device/verify.sh reference # carry .device-bin/sigsweep: against our PyTorch
#                                  # references on the same GPU (the image's torch;
#                                  # MODELS, BATCHES, MOSI_TRAIN, EPOCHS as in
#                                  # benches/reference/run.sh; defaults here: both
#                                  # models, MOSI_TRAIN=1284, EPOCHS=2)
#   .ci/device/verify.sh fusion    # carry .device-bin/fusion-pair.tar.gz (FUSION=1
#                                  # .ci/device/build.sh): one trial of MMIC and of
#                                  # FD-CMDIE without and with burn's kernel fusion,
#                                  # one after the other on the same GPU (FUSION_MODELS to
#                                  # choose; epoch 2 is the steady one)
#
# Several parts run one after the other in one call (`verify.sh tests
# reference fusion`); with .device-bin/all.tar.gz carried (build.sh packs
# every binary into it, about 40 MB) every part finds its binaries.
#
# The four modes of `sigsweep bench train`: one trial (single), k packed
# trials, 10 fused seeds (FD-CMDIE; MMIC does not fuse), and data parallel
# over every GPU when there are at least two. Each prints JSON (trials per
# GPU-hour, samples/s, GPU memory and utilisation); copies go to $OUT. The
# packed runs train the same trial in every process: their
# `loss_spread_across_processes` is 0 when the processes agree bit for bit
# (#16's determinism across processes).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || { echo "usage: verify.sh tests|mmic|fdcmdie|attention|packing|reference|fusion ..." >&2; exit 2; }
out=${OUT:-$(mktemp -d)}
# Everything build.sh built, when carried as one archive.
if [ -f .device-bin/all.tar.gz ]; then
    tar -C .device-bin -xzf .device-bin/all.tar.gz
fi
bin=.device-bin/sigsweep
gpus=$(nvidia-smi -L | grep -c '^GPU ' || true)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

bench() { # name, args…
    local name=$1
    shift
    echo "== $name: sigsweep bench train $*"
    "$bin" bench train --backend cuda --json "$@" | tee "$out/$name.json"
}

failed=()
for part in "$@"; do
echo "==== verify.sh $part"
# Each part in a subshell that stops at its first error; a failed part
# does not keep the next ones from running (device time is scarce).
set +e
(
set -e
case $part in
tests)
    SIGSWEEP_TEST_CUDA_DEVICES=$gpus .device-bin/cuda-tests --ignored --test-threads 1 2>&1 |
        tee "$out/cuda-tests.txt"
    ;;
mmic)
    m=(--model mmic --dataset synthetic-iemocap --epochs 2)
    bench mmic-single "${m[@]}"
    for k in 8 16; do bench "mmic-packed-$k" "${m[@]}" --mode packed --k "$k"; done
    if [ "$gpus" -ge 2 ]; then bench mmic-dp "${m[@]}" --mode dp --devices "$gpus"; fi
    ;;
fdcmdie)
    f=(--model fdcmdie --dataset synthetic-mosi --epochs 2)
    bench fdcmdie-single "${f[@]}"
    bench fdcmdie-packed-4 "${f[@]}" --mode packed --k 4
    bench fdcmdie-fused-10 "${f[@]}" --mode fused --seeds 10
    if [ "$gpus" -ge 2 ]; then bench fdcmdie-dp "${f[@]}" --mode dp --devices "$gpus"; fi
    ;;
attention)
    # The recomputing attention node against burn's composite form, one
    # trial each, one after the other (#16's memory per trial).
    f=(--model fdcmdie --dataset synthetic-mosi --epochs 2)
    bench fdcmdie-recompute "${f[@]}"
    bench fdcmdie-composite "${f[@]}" --composite-attention
    ;;
packing)
    .ci/device/packing.sh "$bin" configs/gpu-packing-mmic.toml 8 | tee "$out/packing.jsonl"
    ;;
reference)
    DEVICE=cuda TORCH_PYTHON=${TORCH_PYTHON:-python3} SIGSWEEP=$bin MOSI_TRAIN=${MOSI_TRAIN:-1284} \
        EPOCHS=${EPOCHS:-2} PYTHONUNBUFFERED=1 bash benches/reference/run.sh 2>&1 | tee "$out/reference.txt"
    ;;
fusion)
    pair=$(mktemp -d)
    if [ -x .device-bin/sigsweep-fusion ]; then
        cp .device-bin/sigsweep .device-bin/sigsweep-fusion "$pair/"
    else
        tar -C "$pair" -xzf .device-bin/fusion-pair.tar.gz
    fi
    for model in ${FUSION_MODELS:-mmic fdcmdie}; do
        case $model in
        mmic) args=(--model mmic --dataset synthetic-iemocap --epochs 2) ;;
        fdcmdie) args=(--model fdcmdie --dataset synthetic-mosi --epochs 2) ;;
        *) echo "unknown model $model" >&2 && exit 2 ;;
        esac
        for variant in sigsweep sigsweep-fusion; do
            echo "== $model, $variant: bench train ${args[*]}"
            "$pair/$variant" bench train --backend cuda "${args[@]}" 2>&1 |
                tee "$out/fusion-$model-$variant.txt"
        done
    done
    ;;
*)
    echo "unknown part $part" >&2
    exit 2
    ;;
esac
)
rc=$?
set -e
if [ "$rc" != 0 ]; then
    echo "==== verify.sh $part failed (exit $rc)" >&2
    failed+=("$part")
fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "verify.sh: failed parts: ${failed[*]}" >&2
    exit 1
fi
