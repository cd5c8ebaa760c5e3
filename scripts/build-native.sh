#!/usr/bin/env bash
# Builds deploykit's optional native gRPC data plane into the package (deploykit/native/_dataplane*.so).
# Installs Debian's gRPC C++ packages first when they are missing and this user can (root + apt-get).
# Usage: scripts/build-native.sh PYTHON [--optional]
#   --optional: when the toolchain is missing and cannot be installed, say so in one line and exit 0
#               (the Python data plane serves); without it, that is an error (exit 2).
set -euo pipefail
python=${1:?usage: build-native.sh PYTHON [--optional]}
optional=${2:-}
packages="libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev pkg-config cmake g++"

have_toolchain() {
  command -v cmake >/dev/null && command -v g++ >/dev/null && command -v protoc >/dev/null &&
    command -v pkg-config >/dev/null && pkg-config --exists grpc++
}

if ! have_toolchain && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing the native data plane's build packages: $packages"
  (apt-get install -y -q $packages >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $packages >/dev/null; }) ||
    echo "apt-get could not install $packages"
fi
if ! have_toolchain; then
  message="native data plane not built: needs $packages (apt-get install -y $packages)"
  if [ "$optional" = "--optional" ]; then
    echo "$message; deploykit serve keeps the Python data plane"
    exit 0
  fi
  echo "error: $message" >&2
  exit 2
fi
"$python" -m deploykit.native.build --quiet
