"""The client's codecs for the Open Inference Protocol (KServe v2): gRPC and REST.

Selected by the ``v2+`` target schemes (``v2+grpc://host:8001``, ``v2+grpcs://``, ``v2+http://host:8000``,
``v2+https://``) or ``protocol="v2"``; they speak to Triton, KServe, MLServer, OpenVINO Model Server
and ``deploykit serve``. Tensors go raw by default (gRPC ``raw_input_contents``; REST Triton's binary
tensor extension, outputs asked for as blobs), or typed/JSON with ``tensor_content=False`` (what
servers without the binary extension, such as MLServer's REST, need). The protocol has no
Classify/Regress (:class:`~deploykit.errors.Unimplemented`); ``status`` is the model's metadata
(every version it lists is available: v2 has no lifecycle states).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from deploykit.errors import InvalidInput, Unimplemented
from deploykit.model_ref import ModelRef
from deploykit.protocol import v2_paths, v2_tensors
from deploykit.protocol.codec import Classifications, Features, VersionStatus, WireRequest
from deploykit.protocol.protos import v2_service_pb2 as pb
from deploykit.tensors import Signature, Tensors, TensorSpec

#: REST header of the binary tensor data extension (the JSON part's length).
HEADER_LENGTH = "Inference-Header-Content-Length"


def version_string(ref: ModelRef) -> str:
    """v2's ``model_version``: the number, else the label (deploykit serve reads labels there), else ""."""
    if ref.version is not None:
        return str(ref.version)
    return ref.label or ""


def _no_examples(method: str) -> Unimplemented:
    return Unimplemented(f"{method} is TF Serving's API; the Open Inference Protocol (v2) has none: use predict")


def signature_from_metadata(
    inputs: Iterable[tuple[str, str, Iterable[int]]], outputs: Iterable[tuple[str, str, Iterable[int]]]
) -> dict[str, Signature]:
    """A v2 model's metadata tensors as deploykit's one signature, ``serving_default``."""

    def spec(name: str, datatype: str, shape: Iterable[int]) -> TensorSpec:
        if datatype not in v2_tensors.DTYPE_NAMES:
            raise InvalidInput(f"tensor {name!r}: unknown v2 datatype {datatype!r}")
        return TensorSpec(name, v2_tensors.DTYPE_NAMES[datatype], tuple(None if int(d) < 0 else int(d) for d in shape))

    return {
        "serving_default": Signature(
            tuple(spec(*t) for t in inputs),
            tuple(spec(*t) for t in outputs),
        )
    }


def _statuses(versions: list[str]) -> list[VersionStatus]:
    numbers = sorted(int(v) for v in versions if str(v).isdigit()) or [0]
    return [VersionStatus(v, "AVAILABLE", "OK", "") for v in numbers]


class V2GrpcCodec:
    """``inference.GRPCInferenceService`` requests (deploykit's ``deploykit.v2`` messages on the official paths)."""

    wire: Literal["grpc", "http"] = "grpc"
    predict_needs_signatures = False

    def __init__(self, tensor_content: bool = True) -> None:
        self.raw = tensor_content

    def infer_request(self, ref: ModelRef, inputs: Tensors, output_filter: list[str] | None) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name=ref.name, model_version=version_string(ref))
        for name, array in inputs.items():
            tensor = request.inputs.add(name=name, datatype=v2_tensors.datatype(array.dtype), shape=array.shape)
            if self.raw or tensor.datatype not in v2_tensors.CONTENTS_FIELDS:
                request.raw_input_contents.append(v2_tensors.to_raw(array))
            else:
                v2_tensors.fill_contents(tensor.contents, array)
        if request.raw_input_contents and len(request.raw_input_contents) != len(request.inputs):
            # FP16/BF16 forced raw: then every input goes raw (the protocol forbids mixing).
            del request.raw_input_contents[:]
            for tensor, array in zip(request.inputs, inputs.values(), strict=True):
                tensor.ClearField("contents")
                request.raw_input_contents.append(v2_tensors.to_raw(array))
        for name in output_filter or []:
            request.outputs.add(name=name)
        return request

    def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        signatures: dict[str, Signature] | None = None,
    ) -> WireRequest[Tensors]:
        body = self.infer_request(ref, inputs, output_filter).SerializeToString()
        return WireRequest(
            v2_paths.MODEL_INFER.path, body, lambda b: infer_outputs(pb.ModelInferResponse.FromString(b))
        )

    def classify(
        self, ref: ModelRef, examples: list[Features], context: Features | None
    ) -> WireRequest[Classifications]:
        raise _no_examples("Classify")

    def regress(self, ref: ModelRef, examples: list[Features], context: Features | None) -> WireRequest[list[float]]:
        raise _no_examples("Regress")

    def metadata(self, ref: ModelRef) -> WireRequest[dict[str, Signature]]:
        request = pb.ModelMetadataRequest(name=ref.name, version=version_string(ref))

        def decode(body: bytes) -> dict[str, Signature]:
            answer = pb.ModelMetadataResponse.FromString(body)
            return signature_from_metadata(
                [(t.name, t.datatype, t.shape) for t in answer.inputs],
                [(t.name, t.datatype, t.shape) for t in answer.outputs],
            )

        return WireRequest(v2_paths.MODEL_METADATA.path, request.SerializeToString(), decode)

    def status(self, ref: ModelRef) -> WireRequest[list[VersionStatus]]:
        request = pb.ModelMetadataRequest(name=ref.name, version=version_string(ref))
        return WireRequest(
            v2_paths.MODEL_METADATA.path,
            request.SerializeToString(),
            lambda body: _statuses(list(pb.ModelMetadataResponse.FromString(body).versions)),
        )

    def server_metadata(self) -> WireRequest[dict[str, Any]]:
        """ServerMetadata: ``{"name", "version", "extensions"}`` (how reports name a v2 engine)."""

        def decode(body: bytes) -> dict[str, Any]:
            answer = pb.ServerMetadataResponse.FromString(body)
            return {"name": answer.name, "version": answer.version, "extensions": list(answer.extensions)}

        return WireRequest(v2_paths.SERVER_METADATA.path, pb.ServerMetadataRequest().SerializeToString(), decode)


def infer_outputs(response: pb.ModelInferResponse) -> Tensors:
    """A ModelInferResponse's outputs (raw or typed) as numpy arrays."""
    raw = response.raw_output_contents
    outputs = {}
    for index, tensor in enumerate(response.outputs):
        what = f"output '{tensor.name}' of model '{response.model_name}'"
        if raw:
            wire = v2_tensors.raw_tensor(tensor.name, tensor.datatype, tensor.shape, raw[index])
        else:
            wire = v2_tensors.contents_tensor(tensor.name, tensor.datatype, tensor.shape, tensor.contents)
        outputs[tensor.name] = wire.decode(what)
    return outputs


class V2RestCodec:
    """``/v2/...`` requests: JSON, or Triton's binary tensor data extension (the default)."""

    wire: Literal["grpc", "http"] = "http"
    predict_needs_signatures = False

    def __init__(self, tensor_content: bool = True) -> None:
        self.binary = tensor_content

    @staticmethod
    def model_path(ref: ModelRef) -> str:
        version = version_string(ref)
        return f"/v2/models/{ref.name}" + (f"/versions/{version}" if version else "")

    def infer_body(self, inputs: Tensors, output_filter: list[str] | None) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        """The body and its headers (``Inference-Header-Content-Length`` when blobs follow)."""
        entries: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for name, array in inputs.items():
            entry: dict[str, Any] = {
                "name": name,
                "shape": list(array.shape),
                "datatype": v2_tensors.datatype(array.dtype),
            }
            if self.binary or entry["datatype"] in ("FP16", "BF16"):
                blob = v2_tensors.to_raw(array)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = v2_tensors.to_json(array)
            entries.append(entry)
        document: dict[str, Any] = {"inputs": entries}
        if output_filter:
            document["outputs"] = [{"name": n, "parameters": {"binary_data": self.binary}} for n in output_filter]
        elif self.binary:
            document["parameters"] = {"binary_data_output": True}
        header = json.dumps(document, separators=(",", ":")).encode()
        if not blobs:
            return header, (("Content-Type", "application/json"),)
        return header + b"".join(blobs), (
            (HEADER_LENGTH, str(len(header))),
            ("Content-Type", "application/octet-stream"),
        )

    def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        signatures: dict[str, Signature] | None = None,
    ) -> WireRequest[Tensors]:
        body, headers = self.infer_body(inputs, output_filter)
        return WireRequest(self.model_path(ref) + "/infer", body, rest_outputs, headers)

    def classify(
        self, ref: ModelRef, examples: list[Features], context: Features | None
    ) -> WireRequest[Classifications]:
        raise _no_examples("Classify")

    def regress(self, ref: ModelRef, examples: list[Features], context: Features | None) -> WireRequest[list[float]]:
        raise _no_examples("Regress")

    def metadata(self, ref: ModelRef) -> WireRequest[dict[str, Signature]]:
        def decode(body: bytes) -> dict[str, Signature]:
            document = json.loads(body)
            return signature_from_metadata(
                [(t["name"], t["datatype"], t["shape"]) for t in document.get("inputs", [])],
                [(t["name"], t["datatype"], t["shape"]) for t in document.get("outputs", [])],
            )

        return WireRequest(self.model_path(ref), None, decode)

    def status(self, ref: ModelRef) -> WireRequest[list[VersionStatus]]:
        return WireRequest(self.model_path(ref), None, lambda body: _statuses(json.loads(body).get("versions") or []))

    def server_metadata(self) -> WireRequest[dict[str, Any]]:
        """ServerMetadata: ``{"name", "version", "extensions"}`` (how reports name a v2 engine)."""
        return WireRequest("/v2", None, json.loads)


def rest_outputs(body: bytes) -> Tensors:
    """An infer answer's outputs: JSON ``data``, or blobs after the JSON header (found by parsing the
    header itself: the answer's ``Inference-Header-Content-Length`` is not needed)."""
    # latin-1 maps each byte to one character, so the JSON parser's end index is a byte offset.
    document, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    if any(ord(c) > 127 for c in body[:end].decode("latin-1")):
        document = json.loads(body[:end])  # non-ASCII names: parse the header again as UTF-8
    view, offset, outputs = memoryview(body), end, {}
    for entry in document.get("outputs", []):
        name, datatype, shape = entry["name"], entry["datatype"], entry["shape"]
        what = f"output '{name}' of model '{document.get('model_name', '')}'"
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            tensor = v2_tensors.raw_tensor(name, datatype, shape, view[offset : offset + size])
            offset += size
        else:
            tensor = v2_tensors.json_tensor(name, datatype, shape, entry.get("data", []))
        outputs[name] = tensor.decode(what)
    return outputs
