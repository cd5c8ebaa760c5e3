#!/usr/bin/env bash
# Serve every exported MLP artifact with `deploykit serve` and compare the deploy paths with one
# client under the same load (the last step of `make run`). Usage: scripts/compare-deploy-paths.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-mlp}
bin=.venv/bin
grpc_port=${DEPLOYKIT_GRPC_PORT:-18500}
rest_port=${DEPLOYKIT_REST_PORT:-18501}
mkdir -p reports

"$bin/deploykit" serve models --port "$grpc_port" --rest_api_port "$rest_port" --log-level warning &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT

targets=()
for path in torch-onnx tf-onnx torch-torchscript torch-pt2 tf-savedmodel; do
  targets+=("grpc://127.0.0.1:$grpc_port/$model-$path")
done
targets+=("http://127.0.0.1:$rest_port/v1/models/$model-torch-onnx")

# compare waits for the server (retrying while it loads), then runs interleaved rounds.
"$bin/deploykit" compare "${targets[@]}" --concurrency 4 --duration 3s --rounds 3 \
  -o "reports/compare-$model.html" -o "reports/compare-$model.json" -o "reports/compare-$model.md"
