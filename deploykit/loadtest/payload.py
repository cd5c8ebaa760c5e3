"""The request a load test sends, built by the client's codec and serialised once (never on the
hot path): workers send the same bytes to the same path for the whole run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.client import Client
from deploykit.errors import UsageError
from deploykit.loadtest.target import LoadTarget
from deploykit.model_ref import ModelRef
from deploykit.protocol.codec import WireRequest
from deploykit.protocol.tfserving_grpc import TfServingGrpcCodec
from deploykit.protocol.tfserving_rest import TfServingRestCodec, predict_path
from deploykit.protocol.v2_codecs import V2GrpcCodec, V2RestCodec
from deploykit.tensors import Tensors, random_inputs


@dataclass(frozen=True)
class Payload:
    """Pre-serialised request bytes for one target, and what they contain."""

    body: bytes  # serialised PredictRequest (gRPC) or JSON document (REST)
    path: str  # gRPC method path or REST URL path
    description: dict  # input names, shapes, dtypes, bytes: for reports
    metadata: tuple[tuple[str, str], ...] = ()  # gRPC request metadata / HTTP headers

    @classmethod
    def of(cls, request: WireRequest, description: dict) -> Payload:
        """The bytes, path and metadata of a codec-built request."""
        assert request.body is not None
        return cls(request.body, request.path, {**description, "bytes": len(request.body)}, request.metadata)


def load_inputs(target: LoadTarget, client: Client | None, *, npz: Path | None, batch_size: int, seed: int) -> Tensors:
    """Inputs from an ``.npz`` (one array per input name), or random ones from the model's metadata
    (read with ``client``, which is needed only then)."""
    if npz is not None:
        try:
            with np.load(npz, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as exc:
            raise UsageError(f"{npz}: cannot read inputs ({exc})") from None
    if client is None:
        raise UsageError(f"{target}: inputs come from an .npz or from the model's metadata (a client)")
    signatures = client.metadata(target.model, version=target.version, label=target.label)
    name = target.signature or "serving_default"
    if name not in signatures:
        raise UsageError(f"{target.model} has no signature {name!r}; it has {sorted(signatures)}")
    return random_inputs(signatures[name], batch_size, seed)


def build(target: LoadTarget, inputs: Tensors | None = None, request_json: Path | None = None) -> Payload:
    """Serialise the request once: a PredictRequest with ``tensor_content`` (gRPC) or JSON (REST)."""
    ref = ModelRef(target.model, target.version, target.label, target.signature)
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
            V2RestCodec.model_path(ref) + "/infer" if target.protocol == "v2" else predict_path(ref),
            {"request_json": str(request_json), "bytes": len(body)},
            (("Content-Type", "application/json"),),
        )
    assert inputs is not None
    description = {
        "inputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype)} for name, v in inputs.items()},
        "batch_size": int(next(iter(inputs.values())).shape[0]) if inputs and next(iter(inputs.values())).ndim else 1,
    }
    if target.protocol == "v2":  # raw tensors: gRPC raw_input_contents, REST Triton's binary extension
        codec = V2RestCodec() if target.is_rest else V2GrpcCodec()
        request = codec.predict(ref, inputs, None, None)
        encoding = "v2 binary tensor extension" if target.is_rest else "v2 protobuf (raw_input_contents)"
    elif target.is_rest:
        request = TfServingRestCodec().predict(ref, inputs)
        encoding = "json (columnar)"
    else:  # outputs in TF Serving's default typed fields, as a TF Serving client receives them
        request = TfServingGrpcCodec(tensor_content=True).predict(ref, inputs)
        request = WireRequest(request.path, request.body, request.decode)
        encoding = "protobuf (tensor_content)"
    return Payload.of(request, {**description, "encoding": encoding})
