"""The SignatureDefs a model version declares, as TF Serving's ``tensorflow.SignatureDef`` messages:
a SavedModel's exactly as saved, other formats' generated from their signature. Used for
GetModelMetadata and for the texts of TF Serving's signature errors (which print the SignatureDef).
"""

from __future__ import annotations

from google.protobuf import text_format

from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.tfserving_grpc import signature_def
from deploykit.server.version_loader import LoadedVersion


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
