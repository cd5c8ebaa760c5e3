"""The request a load test sends, built once and serialised once (never on the hot path)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.client import Client
from deploykit.errors import UsageError
from deploykit.loadtest.target import LoadTarget
from deploykit.protocol import messages, rest_client
from deploykit.tensors import Tensors, random_inputs


@dataclass(frozen=True)
class Payload:
    """Pre-serialised request bytes for one target, and what they contain."""

    body: bytes  # serialised PredictRequest (gRPC) or JSON document (REST)
    path: str  # gRPC method path or REST URL path
    description: dict  # input names, shapes, dtypes, bytes: for reports


def load_inputs(target: LoadTarget, client: Client, *, npz: Path | None, batch_size: int, seed: int) -> Tensors:
    """Inputs from an ``.npz`` (one array per input name), or random ones from the model's metadata."""
    if npz is not None:
        try:
            with np.load(npz, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as exc:
            raise UsageError(f"{npz}: cannot read inputs ({exc})") from None
    signatures = client.metadata(target.model, version=target.version, label=target.label)
    name = target.signature or "serving_default"
    if name not in signatures:
        raise UsageError(f"{target.model} has no signature {name!r}; it has {sorted(signatures)}")
    return random_inputs(signatures[name], batch_size, seed)


def build(target: LoadTarget, inputs: Tensors | None = None, request_json: Path | None = None) -> Payload:
    """Serialise the request once: a PredictRequest with ``tensor_content`` (gRPC) or JSON (REST)."""
    if request_json is not None:
        if not target.is_rest:
            raise UsageError("--request-json applies to REST targets; give --npz for gRPC")
        try:
            body = request_json.read_bytes()
            json.loads(body)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{request_json}: cannot read a JSON request ({exc})") from None
        return Payload(
            body,
            rest_client.model_path(target.model, target.version, target.label) + ":predict",
            {"request_json": str(request_json), "bytes": len(body)},
        )
    assert inputs is not None
    description = {
        "inputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype)} for name, v in inputs.items()},
        "batch_size": int(next(iter(inputs.values())).shape[0]) if inputs and next(iter(inputs.values())).ndim else 1,
    }
    if target.is_rest:
        body = json.dumps(rest_client.predict_body(inputs, target.signature)).encode()
        path = rest_client.model_path(target.model, target.version, target.label) + ":predict"
        encoding = "json (columnar)"
    else:
        request = messages.predict_request(
            target.model,
            inputs,
            version=target.version,
            label=target.label,
            signature=target.signature,
            tensor_content=True,
        )
        body = request.SerializeToString()
        path = messages.grpc_paths.PREDICT.path
        encoding = "protobuf (tensor_content)"
    return Payload(body, path, {**description, "bytes": len(body), "encoding": encoding})
