#!/usr/bin/env bash
# Installs the system packages the tests need (Debian 12, apt, as root):
#   etcd-server       - `etcd`, started by the coordinator's etcd store and
#                       election tests (they fail, not skip, without it)
#   protobuf-compiler - `protoc`, used by the proto crate's build script
#                       (and etcd-client's)
#   numpy (PyPI)      - used by the data crate's tests to write pickle files
#                       in the real MMSA / MM-DFN formats
# Idempotent and quiet: does nothing when everything is present.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)

NUMPY_VERSION=2.4.6
if ! python3 -c "import numpy" >/dev/null 2>&1; then
    echo "install-deps: installing numpy==${NUMPY_VERSION}" >&2
    python3 -m pip install -q --disable-pip-version-check "numpy==${NUMPY_VERSION}" \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "numpy==${NUMPY_VERSION}"
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
