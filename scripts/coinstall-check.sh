#!/usr/bin/env bash
# Co-installation check (issue 16): deploykit[serve,loadtest] beside the newest tritonclient[grpc,http]
# in a fresh virtual environment, then `pip check`. It guards the protobuf range: deploykit's generated
# *_pb2.py must accept the protobuf that Triton's, KServe's and MLServer's packages require (< 7 today).
# tritonclient is deliberately NOT constrained (the newest one is the point); everything else follows
# constraints.txt, minus the framework pins the serving path never needs.
# Usage: scripts/coinstall-check.sh [VENV_DIR]   (PYTHON=python3.11 by default; about 30-60 s with a warm pip cache)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
CONSTRAINTS=$(mktemp /tmp/deploykit-coinstall-constraints.XXXXXX)
if [[ $# -ge 1 ]]; then
    VENV=$1
    trap 'rm -f "$CONSTRAINTS"' EXIT
else
    VENV=$(mktemp -d /tmp/deploykit-coinstall.XXXXXX)
    trap 'rm -rf "$CONSTRAINTS" "$VENV"' EXIT
fi
grep -viE '^(torch|tensorflow|tensorflow-serving-api|tritonclient)==' constraints.txt > "$CONSTRAINTS"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade-strategy only-if-needed \
    -c "$CONSTRAINTS" ".[serve,loadtest]" "tritonclient[grpc,http]"
"$VENV/bin/python" -m pip check
# Both sets of generated messages load in one process (deploykit's own package, Triton's inference.*).
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import tritonclient.grpc.service_pb2  # noqa: F401  (registers inference.* in the default pool)
import deploykit.protocol.protos.serving_pb2  # noqa: F401
import deploykit.protocol.protos.v2_service_pb2  # noqa: F401  (deploykit.v2.*: no collision)
print("co-install ok: deploykit", md.version("deploykit"), "tritonclient", md.version("tritonclient"),
      "protobuf", md.version("protobuf"), "grpcio", md.version("grpcio"))
PY
