#!/usr/bin/env bash
# Installs the system packages the tests need (Debian 12, apt, as root):
#   etcd-server       - `etcd`, started by the coordinator's etcd store and
#                       election tests (they fail, not skip, without it)
#   protobuf-compiler - `protoc`, used by the proto crate's build script
#                       (and etcd-client's)
#   iproute2          - `ip`, used by tests/multihost.rs to build network
#                       namespaces (the test skips, saying why, where the
#                       machine does not allow them)
#   numpy (PyPI)      - used by the data crate's tests to write pickle files
#                       in the real MMSA / MM-DFN formats
#   grpcio-tools, grpcio, protobuf (PyPI, pinned together)
#                     - tests/python_client.rs generates Python stubs from
#                       proto/ with grpc_tools.protoc and runs
#                       tests/python/client.py against a real coordinator
# Idempotent and quiet: does nothing when everything is present.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)

NUMPY_VERSION=2.4.6
if ! python3 -c "import numpy" >/dev/null 2>&1; then
    echo "install-deps: installing numpy==${NUMPY_VERSION}" >&2
    python3 -m pip install -q --disable-pip-version-check "numpy==${NUMPY_VERSION}" \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "numpy==${NUMPY_VERSION}"
fi

# grpcio-tools 1.85.1 needs grpcio >= 1.85.1 and protobuf >= 7.35.1, < 8.
GRPCIO_VERSION=1.85.1
PROTOBUF_VERSION=7.36.2
if ! python3 -c "import grpc_tools" >/dev/null 2>&1; then
    grpc_pkgs=("grpcio-tools==${GRPCIO_VERSION}" "grpcio==${GRPCIO_VERSION}" "protobuf==${PROTOBUF_VERSION}")
    echo "install-deps: installing ${grpc_pkgs[*]}" >&2
    python3 -m pip install -q --disable-pip-version-check "${grpc_pkgs[@]}" \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${grpc_pkgs[@]}"
fi

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
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
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for cmd in etcd protoc; do
    command -v "$cmd" >/dev/null 2>&1 || {
        echo "install-deps: \`$cmd\` still missing after install" >&2
        exit 1
    }
done
