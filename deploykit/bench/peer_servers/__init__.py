"""The peers' model classes: scripts run by each peer's own Python (:mod:`deploykit.bench.peer_envs`),
never imported by deploykit. Each serves one ONNX model with ONNX Runtime over the Open Inference
Protocol, configured by the environment: MODEL_NAME, MODEL_PATH, HTTP_PORT, GRPC_PORT, ORT_THREADS."""
