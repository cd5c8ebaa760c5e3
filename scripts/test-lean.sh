#!/usr/bin/env bash
# The lean install, tested: a second virtual environment with only deploykit[serve,loadtest]
# (ONNX Runtime on CPU, no TensorFlow, no PyTorch) plus the test tools, running the tests marked
# `lean` (ONNX serving, client, load tester). Proves the serving path works, and imports, without
# the training frameworks. Called by `make test`; takes about two minutes once the wheels are cached.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${LEAN_VENV:-.venv-lean}
STAMP="$VENV/.deploykit-lean-installed"

if [[ ! -f "$STAMP" || pyproject.toml -nt "$STAMP" || constraints.txt -nt "$STAMP" ]]; then
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    # Test tools only: pytest, certificates for TLS tests, onnx to build test models, psutil to find
    # worker processes. Nothing here pulls TensorFlow or PyTorch.
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e '.[serve,loadtest]' \
        pytest pytest-timeout trustme onnx psutil
    touch "$STAMP"
fi
for framework in tensorflow torch keras; do
    if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$framework') is None)"; then
        echo "error: $framework is installed in $VENV; the lean environment must not have it" >&2
        exit 2
    fi
done
# Only files whose imports stay framework-free are collected; `-m lean` selects within them.
exec "$VENV/bin/python" -m pytest -m lean -p no:cacheprovider "$@" \
    tests/loadtest/test_measurements.py tests/loadtest/test_honesty.py tests/server/test_tls.py
