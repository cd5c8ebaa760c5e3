"""TF Serving's REST API from the client's side (columnar format, which keeps exact shapes).

The server's side of the same documents: :mod:`deploykit.protocol.rest_json` reads predict
bodies and writes their answers, :mod:`deploykit.protocol.examples` reads classify/regress bodies,
and the metadata/status documents are the gRPC messages in protobuf's JSON mapping
(:mod:`deploykit.server.rest_frontend`). :class:`TfServingRestCodec` is the client's
:class:`~deploykit.protocol.codec.Codec` for this protocol.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from deploykit.errors import SignatureNotFound
from deploykit.model_ref import ModelRef
from deploykit.protocol.codec import Classifications, VersionStatus, WireRequest
from deploykit.protocol.examples import to_json
from deploykit.tensors import Signature, Tensors, TensorSpec, numpy_dtype

DEFAULT_SIGNATURE = "serving_default"


def model_path(ref: ModelRef | str) -> str:
    """``/v1/models/NAME[/versions/N|/labels/L]`` (a version wins over a label)."""
    ref = ModelRef(ref) if isinstance(ref, str) else ref
    path = f"/v1/models/{ref.name}"
    if ref.version is not None:
        return f"{path}/versions/{ref.version}"
    if ref.label is not None:
        return f"{path}/labels/{ref.label}"
    return path


def predict_path(ref: ModelRef) -> str:
    """Where a predict request for ``ref`` is POSTed."""
    return model_path(ref) + ":predict"


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind in "SU":
        encode = lambda v: {"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()}  # noqa: E731
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.ndim else encode(array.item())
    return array.tolist()


def predict_body(inputs: Tensors, signature: str = "") -> dict[str, Any]:
    """A columnar ``:predict`` body (``{"inputs": ...}``); binary strings travel as ``{"b64": ...}``."""
    body: dict[str, Any] = {"inputs": {name: _json_value(value) for name, value in inputs.items()}}
    if signature:
        body["signature_name"] = signature
    return body


def examples_body(examples: list[dict], context: dict | None = None, signature: str = "") -> dict[str, Any]:
    """A ``:classify`` / ``:regress`` body; ``bytes`` feature values travel as ``{"b64": ...}``."""
    body: dict[str, Any] = {"examples": to_json(list(examples))}
    if context is not None:
        body["context"] = to_json(context)
    if signature:
        body["signature_name"] = signature
    return body


def classifications(document: dict[str, Any]) -> Classifications:
    """``{"results": [[[label, score], ...], ...]}`` as (label, score) per class per example."""
    return [[(label, float(score)) for label, score in classes] for classes in document["results"]]


def regressions(document: dict[str, Any]) -> list[float]:
    """``{"results": [value, ...]}``."""
    return [float(value) for value in document["results"]]


def _array(spec: TensorSpec, value: Any) -> np.ndarray:
    if spec.dtype == "string":
        decode = lambda v: base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode()  # noqa: E731
        nested = np.array(value, dtype=object)
        return np.vectorize(decode, otypes=[object])(nested) if nested.ndim else np.array(decode(value), dtype=object)
    return np.asarray(value, dtype=numpy_dtype(spec.dtype))


def predict_outputs(document: dict[str, Any], signature: Signature | None, output_filter: list[str] | None) -> Tensors:
    """Decode ``{"outputs": ...}`` with the dtypes of ``signature`` (REST has no output_filter: applied here).

    Without a signature, values take numpy's inferred dtypes and a lone unnamed output is "outputs".
    """
    outputs = document["outputs"]
    specs = {t.name: t for t in signature.outputs} if signature is not None else {}
    if not isinstance(outputs, dict) and not specs:
        outputs = {"outputs": outputs}
    elif len(specs) == 1 and not (isinstance(outputs, dict) and set(outputs) == set(specs)):
        outputs = {next(iter(specs)): outputs}
    wanted = output_filter or list(outputs)
    return {name: _array(specs[name], outputs[name]) if name in specs else np.asarray(outputs[name]) for name in wanted}


def proto_json(message: Message) -> dict[str, Any]:
    """A message as TF Serving's REST answers print it (protobuf's JSON mapping, field names kept):
    how the server writes the ``/metadata`` and status documents that :func:`signatures` and
    :func:`statuses` read."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def metadata_document(name: str, version: int, signature_map: Message) -> dict[str, Any]:
    """The ``/metadata`` answer for a servable with ``signature_map`` (a SignatureDefMap)."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": proto_json(signature_map)},
    }


def _spec(name: str, info: dict[str, Any]) -> TensorSpec:
    from deploykit.protocol.tensor_codec import DT, NAME_BY_DT

    shape = info.get("tensor_shape", {})
    dims = (
        None
        if shape.get("unknown_rank")
        else tuple(None if int(d["size"]) < 0 else int(d["size"]) for d in shape.get("dim", []))
    )
    return TensorSpec(name, NAME_BY_DT.get(DT.Value(info["dtype"]), info["dtype"]), dims)


def signatures(document: dict[str, Any]) -> dict[str, Signature]:
    """Signature name -> deploykit Signature, from a ``/metadata`` document."""
    defs = document["metadata"]["signature_def"]["signature_def"]
    return {
        name: Signature(
            tuple(_spec(n, i) for n, i in sorted(sig.get("inputs", {}).items())),
            tuple(_spec(n, i) for n, i in sorted(sig.get("outputs", {}).items())),
        )
        for name, sig in defs.items()
    }


def statuses(document: dict[str, Any]) -> list[VersionStatus]:
    """Every version's state, from a model status document."""
    return [
        VersionStatus(
            int(s["version"]),
            s["state"],
            s.get("status", {}).get("error_code", "OK"),
            s.get("status", {}).get("error_message", ""),
        )
        for s in document["model_version_status"]
    ]


class TfServingRestCodec:
    """TF Serving's ``/v1/models`` REST API as a client :class:`~deploykit.protocol.codec.Codec`.

    REST JSON carries no dtypes, so predict answers are decoded with the signature's
    (``predict_needs_signatures``); REST has no ``output_filter`` either, so it is applied here.
    """

    wire: Literal["grpc", "http"] = "http"
    predict_needs_signatures = True

    def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        signatures: dict[str, Signature] | None = None,
    ) -> WireRequest[Tensors]:
        """``signatures`` (the model's, from :meth:`metadata`) give the answer its dtypes; None: not
        known (the load tester, which reads no answer), values take numpy's inferred dtypes."""
        signature = None
        if signatures is not None:
            name = ref.signature or DEFAULT_SIGNATURE
            if name not in signatures:
                raise SignatureNotFound(f'Serving signature name: "{name}" not found in signature def')
            signature = signatures[name]
        body = predict_body(inputs, ref.signature)
        return _request(predict_path(ref), body, lambda document: predict_outputs(document, signature, output_filter))

    def classify(
        self, ref: ModelRef, examples: list[dict], context: dict | None = None
    ) -> WireRequest[Classifications]:
        body = examples_body(examples, context, ref.signature)
        return _request(model_path(ref) + ":classify", body, classifications)

    def regress(self, ref: ModelRef, examples: list[dict], context: dict | None = None) -> WireRequest[list[float]]:
        return _request(model_path(ref) + ":regress", examples_body(examples, context, ref.signature), regressions)

    def metadata(self, ref: ModelRef) -> WireRequest[dict[str, Signature]]:
        return _request(model_path(ModelRef(ref.name, ref.version, ref.label)) + "/metadata", None, signatures)

    def status(self, ref: ModelRef) -> WireRequest[list[VersionStatus]]:
        return _request(model_path(ModelRef(ref.name, ref.version)), None, statuses)


def _request(path: str, document: dict | None, read: Callable[[dict[str, Any]], Any]) -> WireRequest:
    """A POST of ``document`` as JSON (a GET when None); the answer parsed as JSON, then ``read``."""
    body = None if document is None else json.dumps(document).encode()
    return WireRequest(path, body, lambda raw: read(json.loads(raw)), (("Content-Type", "application/json"),))
