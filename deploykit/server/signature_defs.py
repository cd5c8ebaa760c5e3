"""The SignatureDefs a model version declares, as TF Serving's ``tensorflow.SignatureDef`` messages:
a SavedModel's exactly as saved, other formats' generated from their signature. Used for
GetModelMetadata and for the texts of TF Serving's signature errors (which print the SignatureDef).
"""

from __future__ import annotations

from google.protobuf import text_format

from deploykit.protocol import tensor_codec
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature

PREDICT_METHOD_NAME = "tensorflow/serving/predict"


def signature_def(signature: Signature) -> pb.SignatureDef:
    """A deploykit signature as TF Serving's SignatureDef (dynamic dims are -1)."""
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


def signature_def_map(loaded: LoadedVersion) -> pb.SignatureDefMap:
    """The SignatureDefs a version declares, for GetModelMetadata.

    A SavedModel's are passed through as saved (real tensor names, method names, shapes, defaults;
    fields deploykit's protos do not name survive as unknown fields), as TF Serving answers them;
    other formats get one generated from their signature.
    """
    signature_map = pb.SignatureDefMap()
    saved = loaded.runtime.signature_defs
    if saved:
        for name, serialized in saved.items():
            signature_map.signature_def[name].ParseFromString(serialized)
    else:
        for name, signature in loaded.signatures.items():
            signature_map.signature_def[name].CopyFrom(signature_def(signature))
    return signature_map


def definition(loaded: LoadedVersion, name: str) -> pb.SignatureDef:
    """Signature ``name`` of ``loaded`` (which has it) as a SignatureDef."""
    saved = loaded.runtime.signature_defs
    if saved:
        return pb.SignatureDef.FromString(saved[name])
    return signature_def(loaded.signatures[name])


def debug_string(signature: pb.SignatureDef) -> str:
    """What TF Serving prints for a SignatureDef (C++ ``DebugString``: protobuf text format)."""
    return text_format.MessageToString(signature)
