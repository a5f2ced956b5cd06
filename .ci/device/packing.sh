#!/usr/bin/env bash
# End-to-end trials per GPU-hour on a GPU machine: a real coordinator, a
# real CUDA worker, and a sweep of small trials, run twice — one trial at a
# time, then k slot processes packed on GPU 0 — timing submit → finished.
#
#   .ci/device/packing.sh SIGSWEEP_BINARY [SWEEP_FILE] [K]
#
# Prints one JSON object per mode. Needs nvidia-smi for utilisation/memory.
set -euo pipefail
BIN=$(realpath "$1")
SWEEP=$(realpath "${2:-configs/gpu-packing-mmic.toml}")
K=${3:-8}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_mode() {
    local slots=$1 port url trials start end smi
    port=$(free_port)
    url="http://127.0.0.1:$port"
    RUST_LOG=warn "$BIN" coordinator --listen "127.0.0.1:$port" --store "embedded:$work/coord-$slots" &
    local coord=$!
    for _ in $(seq 50); do "$BIN" status --coordinator "$url" >/dev/null 2>&1 && break; sleep 0.2; done
    smi="$work/smi-$slots.csv"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 >"$smi" &
    local smi_pid=$!
    start=$(date +%s.%N)
    local id
    id=$("$BIN" submit "$SWEEP" --coordinator "$url")
    RUST_LOG=warn "$BIN" worker --coordinator "$url" --backend cuda --gpus 0 --trials-per-gpu "$slots" --name "w$slots" &
    local worker=$!
    "$BIN" watch "$id" --coordinator "$url" >/dev/null 2>&1
    end=$(date +%s.%N)
    kill "$smi_pid" || true
    trials=$("$BIN" results "$id" --coordinator "$url" | grep -c '"completed"')
    kill -TERM "$worker" || true
    wait "$worker" || true
    kill "$coord" || true
    wait "$coord" || true
    python3 - "$slots" "$trials" "$start" "$end" "$smi" <<'PY'
import json, sys
slots, trials, start, end, smi = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rows = [l.split(",") for l in open(smi) if l.strip()]
util = [float(r[0]) for r in rows]
mem = [float(r[1]) for r in rows]
secs = end - start
print(json.dumps({"slots": slots, "trials": trials, "seconds": round(secs, 2),
                  "trials_per_gpu_hour": round(trials * 3600 / secs, 1),
                  "gpu_util_mean": round(sum(util) / max(len(util), 1), 1),
                  "gpu_mem_peak_mib": max(mem, default=0)}))
PY
}

run_mode 1
run_mode "$K"
