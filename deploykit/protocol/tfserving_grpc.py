"""TF Serving's gRPC messages, each with its encoder and decoder side by side, and the client codec.

Per message, the side that writes it and the side that reads it: the client encodes requests and
decodes responses, the server (:mod:`deploykit.server.grpc_frontend`) decodes requests and encodes
responses, with the functions below. :class:`TfServingGrpcCodec` is the client's
:class:`~deploykit.protocol.codec.Codec` for this protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from deploykit.model_ref import ModelRef
from deploykit.protocol import examples as example_json
from deploykit.protocol import grpc_paths, tensor_codec
from deploykit.protocol.codec import Classifications, VersionStatus, WireRequest
from deploykit.protocol.protos import error_codes_pb2
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.wire import MAX_MESSAGE_BYTES, TENSOR_CONTENT_KEY
from deploykit.tensors import Signature, Tensors, TensorSpec


# -- ModelSpec
def model_spec(target: pb.ModelSpec, ref: ModelRef) -> None:
    """Write ``ref`` into a request's ModelSpec (a version wins over a label)."""
    target.name = ref.name
    if ref.version is not None:
        target.version.value = ref.version
    elif ref.label is not None:
        target.version_label = ref.label
    target.signature_name = ref.signature


def model_ref(spec: pb.ModelSpec) -> ModelRef:
    """Read a request's ModelSpec."""
    choice = spec.WhichOneof("version_choice")
    return ModelRef(
        name=spec.name,
        version=spec.version.value if choice == "version" else None,
        label=spec.version_label if choice == "version_label" else None,
        signature=spec.signature_name,
    )


def served_spec(target: pb.ModelSpec, name: str, version: int, signature: str = "") -> None:
    """Write the servable that answered into a response's ModelSpec."""
    target.name = name
    target.version.value = version
    target.signature_name = signature


# -- Predict
def predict_request(
    ref: ModelRef | str,
    inputs: Tensors,
    *,
    output_filter: list[str] | None = None,
    tensor_content: bool = True,
) -> pb.PredictRequest:
    """A PredictRequest for ``ref`` (a ModelRef, or a model name for its latest version)."""
    request = pb.PredictRequest(output_filter=output_filter or [])
    model_spec(request.model_spec, ModelRef(ref) if isinstance(ref, str) else ref)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_codec.from_ndarray(value, tensor_content=tensor_content))
    return request


def predict_inputs(request: pb.PredictRequest, max_bytes: int = tensor_codec.DEFAULT_MAX_TENSOR_BYTES) -> Tensors:
    """A PredictRequest's input tensors, each at most ``max_bytes`` decoded (checked before allocating)."""
    return {name: tensor_codec.to_ndarray(proto, name, max_bytes) for name, proto in request.inputs.items()}


def predict_input_bytes(request: pb.PredictRequest, max_bytes: int = tensor_codec.DEFAULT_MAX_TENSOR_BYTES) -> int:
    """What :func:`predict_inputs` would allocate, checked without allocating anything."""
    return sum(tensor_codec.decoded_bytes(proto, name, max_bytes) for name, proto in request.inputs.items())


def predict_response(
    served: ModelRef, version: int, outputs: Tensors, *, tensor_content: bool = False
) -> pb.PredictResponse:
    """A PredictResponse: the servable that answered and its output tensors (typed fields or bytes)."""
    response = pb.PredictResponse()
    served_spec(response.model_spec, served.name, version, served.signature)
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tensor_codec.from_ndarray(value, tensor_content=tensor_content))
    return response


def predict_outputs(response: pb.PredictResponse) -> Tensors:
    """A PredictResponse's output tensors (a client trusts its server's sizes up to gRPC's own limit)."""
    return {name: tensor_codec.to_ndarray(proto, name, MAX_MESSAGE_BYTES) for name, proto in response.outputs.items()}


# -- Classify / Regress
def examples_request(
    request: pb.ClassificationRequest | pb.RegressionRequest,
    ref: ModelRef,
    examples: list[dict],
    context: dict | None = None,
) -> pb.ClassificationRequest | pb.RegressionRequest:
    """Fill a Classify/Regress ``request`` with ``tf.Example`` s given as feature dicts (the REST
    JSON form: one value or a list per feature; ``bytes`` for binary strings). The server reads
    them back with :func:`deploykit.protocol.examples.serialized`."""
    model_spec(request.model_spec, ref)
    json_context = None if context is None else example_json.to_json(context)
    request.input.CopyFrom(example_json.input_from_json(example_json.to_json(list(examples)), json_context))
    return request


def fill_classifications(target: pb.ClassificationResult, results: Iterable[Iterable[tuple[str, float]]]) -> None:
    """Write (label, score) per class per example into a ClassificationResult."""
    for classes in results:
        target.classifications.add().classes.extend(pb.Class(label=label, score=score) for label, score in classes)


def classifications(response: pb.ClassificationResponse) -> Classifications:
    """Per example, (label, score) per class."""
    return [[(c.label, c.score) for c in result.classes] for result in response.result.classifications]


def fill_regressions(target: pb.RegressionResult, values: Iterable[float]) -> None:
    """Write one value per example into a RegressionResult."""
    target.regressions.extend(pb.Regression(value=value) for value in values)


def regressions(response: pb.RegressionResponse) -> list[float]:
    """One value per example."""
    return [r.value for r in response.result.regressions]


# -- GetModelMetadata
def metadata_request(ref: ModelRef | str) -> pb.GetModelMetadataRequest:
    """A GetModelMetadataRequest for the signature defs of ``ref``."""
    request = pb.GetModelMetadataRequest(metadata_field=["signature_def"])
    model_spec(request.model_spec, ModelRef(ref) if isinstance(ref, str) else ref)
    return request


def metadata_response(name: str, version: int, signature_map: pb.SignatureDefMap) -> pb.GetModelMetadataResponse:
    """A GetModelMetadataResponse carrying ``signature_map`` under TF Serving's type URL."""
    response = pb.GetModelMetadataResponse()
    served_spec(response.model_spec, name, version)
    packed = response.metadata["signature_def"]
    packed.type_url = grpc_paths.SIGNATURE_DEF_MAP_TYPE_URL
    packed.value = signature_map.SerializeToString()
    return response


PREDICT_METHOD_NAME = "tensorflow/serving/predict"


def signature_def(signature: Signature) -> pb.SignatureDef:
    """A deploykit signature as TF Serving's SignatureDef (dynamic dims are -1); read back by
    :func:`signatures`."""
    sig = pb.SignatureDef(method_name=PREDICT_METHOD_NAME)
    for target, specs in ((sig.inputs, signature.inputs), (sig.outputs, signature.outputs)):
        for spec in specs:
            info = target[spec.name]
            info.name = f"{spec.name}:0"
            info.dtype = tensor_codec.DT_BY_NAME[spec.dtype]
            if spec.shape is None:
                info.tensor_shape.unknown_rank = True
                continue
            for dim in spec.shape:
                info.tensor_shape.dim.add(size=-1 if dim is None else dim)
    return sig


def _spec(name: str, info: pb.TensorInfo) -> TensorSpec:
    dims = (
        None if info.tensor_shape.unknown_rank else tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
    )
    return TensorSpec(name, tensor_codec.NAME_BY_DT.get(info.dtype, tensor_codec.dtype_label(info.dtype)), dims)


def signatures(response: pb.GetModelMetadataResponse) -> dict[str, Signature]:
    """Signature name -> deploykit Signature, from a GetModelMetadata response."""
    packed = response.metadata["signature_def"]
    if not packed.type_url.endswith("SignatureDefMap"):
        raise ValueError(f"unexpected metadata type {packed.type_url}")
    signature_map = pb.SignatureDefMap.FromString(packed.value)
    return {
        name: Signature(
            tuple(_spec(n, i) for n, i in sorted(sig.inputs.items())),
            tuple(_spec(n, i) for n, i in sorted(sig.outputs.items())),
        )
        for name, sig in signature_map.signature_def.items()
    }


# -- GetModelStatus
def status_request(ref: ModelRef | str) -> pb.GetModelStatusRequest:
    """A GetModelStatusRequest for every version of a model, or the one ``ref.version`` names."""
    ref = ModelRef(ref) if isinstance(ref, str) else ref
    request = pb.GetModelStatusRequest()
    model_spec(request.model_spec, ModelRef(ref.name, ref.version))
    return request


def version_status(version: int, state: str, error: str | None = None) -> pb.ModelVersionStatus:
    """A version's GetModelStatus entry: its state, and the load error of a version that failed."""
    entry = pb.ModelVersionStatus(version=version, state=pb.ModelVersionStatus.State.Value(state))
    entry.status.error_code = error_codes_pb2.UNKNOWN if error else error_codes_pb2.OK
    entry.status.error_message = error or ""
    return entry


def statuses(response: pb.GetModelStatusResponse) -> list[VersionStatus]:
    """Every version's state, from a GetModelStatus response."""
    return [
        VersionStatus(
            s.version,
            pb.ModelVersionStatus.State.Name(s.state),
            error_codes_pb2.Code.Name(s.status.error_code),
            s.status.error_message,
        )
        for s in response.model_version_status
    ]


class TfServingGrpcCodec:
    """TF Serving's PredictionService/ModelService over gRPC, as a client :class:`~.codec.Codec`.

    ``tensor_content``: send inputs as raw bytes and ask deploykit's server (through
    :data:`~deploykit.protocol.wire.TENSOR_CONTENT_KEY`) for outputs the same way.
    """

    wire: Literal["grpc", "http"] = "grpc"
    predict_needs_signatures = False

    def __init__(self, tensor_content: bool = True) -> None:
        self.tensor_content = tensor_content

    def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        signatures: dict[str, Signature] | None = None,
    ) -> WireRequest[Tensors]:
        request = predict_request(ref, inputs, output_filter=output_filter, tensor_content=self.tensor_content)
        metadata = ((TENSOR_CONTENT_KEY, "1"),) if self.tensor_content else ()
        return _request(grpc_paths.PREDICT, request, predict_outputs, metadata)

    def classify(
        self, ref: ModelRef, examples: list[dict], context: dict | None = None
    ) -> WireRequest[Classifications]:
        request = examples_request(pb.ClassificationRequest(), ref, examples, context)
        return _request(grpc_paths.CLASSIFY, request, classifications)

    def regress(self, ref: ModelRef, examples: list[dict], context: dict | None = None) -> WireRequest[list[float]]:
        request = examples_request(pb.RegressionRequest(), ref, examples, context)
        return _request(grpc_paths.REGRESS, request, regressions)

    def metadata(self, ref: ModelRef) -> WireRequest[dict[str, Signature]]:
        return _request(grpc_paths.GET_MODEL_METADATA, metadata_request(ref), signatures)

    def status(self, ref: ModelRef) -> WireRequest[list[VersionStatus]]:
        return _request(grpc_paths.GET_MODEL_STATUS, status_request(ref), statuses)


def _request(method: grpc_paths.Method, message, read, metadata: tuple[tuple[str, str], ...] = ()) -> WireRequest:
    """``message`` serialised for ``method``; the answer parsed as its response type, then ``read``."""
    return WireRequest(
        method.path, message.SerializeToString(), lambda raw: read(method.response.FromString(raw)), metadata
    )
