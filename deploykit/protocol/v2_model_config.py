"""Triton's ``ModelConfig`` from a deploykit signature: what ``config.pbtxt`` and the ModelConfig API say.

One home for the mapping used by both deploykit serve (the v2 ModelConfig answer, which tools such
as perf_analyzer read before inferring) and ``deploykit triton-deploy`` (the ``config.pbtxt`` files).
The message is deploykit's copy of Triton's (``protos/v2_model_config.proto``), so
``text_format`` writes exactly what Triton's parser reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from deploykit.protocol.protos import v2_model_config_pb2 as mc
from deploykit.tensors import Signature, TensorSpec

#: deploykit format -> Triton platform. ``pt2`` (a torch.export program run eagerly) has no Triton
#: counterpart (Triton's ``torch_aoti`` takes AOTInductor packages): it is named for what it is.
PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "torchscript": "pytorch_libtorch",
    "savedmodel": "tensorflow_savedmodel",
    "aoti": "torch_aoti",
    "pt2": "torch_export",
}

#: deploykit dtype name -> config.pbtxt data type (v2's BYTES is Triton's TYPE_STRING).
CONFIG_TYPES = {
    "bool": mc.TYPE_BOOL,
    "uint8": mc.TYPE_UINT8,
    "uint16": mc.TYPE_UINT16,
    "uint32": mc.TYPE_UINT32,
    "uint64": mc.TYPE_UINT64,
    "int8": mc.TYPE_INT8,
    "int16": mc.TYPE_INT16,
    "int32": mc.TYPE_INT32,
    "int64": mc.TYPE_INT64,
    "float16": mc.TYPE_FP16,
    "float32": mc.TYPE_FP32,
    "float64": mc.TYPE_FP64,
    "bfloat16": mc.TYPE_BF16,
    "string": mc.TYPE_STRING,
}


def batch_dimension(signature: Signature) -> bool:
    """True when every input and output has a known rank >= 2 and a dynamic first dimension: Triton's
    implicit batch dimension (``max_batch_size > 0``, dims without it) then fits the model.

    Rank 1 is excluded: Triton needs at least one dimension after the batch one (without a
    ``reshape``), so such a model is described with its full shape and ``max_batch_size: 0``.
    """
    return all(
        spec.shape and len(spec.shape) >= 2 and spec.shape[0] is None
        for spec in (*signature.inputs, *signature.outputs)
    )


@dataclass(frozen=True)
class Batching:
    """Triton's dynamic batcher settings (``dynamic_batching``)."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    shape = spec.shape or ()
    return [-1 if d is None else d for d in (shape[1:] if batched else shape)]


def model_config(
    name: str, platform: str, signature: Signature, batching: Batching | None, max_batch_size: int = 0
) -> mc.ModelConfig:
    """The ModelConfig of one served signature.

    With ``batching`` (and a signature with a batch dimension, :func:`batch_dimension`) the config
    has Triton's implicit batch dimension, ``max_batch_size`` and ``dynamic_batching``; otherwise
    ``max_batch_size`` is ``max_batch_size`` when the signature has a batch dimension (requests of
    any size up to it, no batcher) and 0 without one, with full shapes.
    """
    batched = batch_dimension(signature) and (batching is not None or max_batch_size > 0)
    config = mc.ModelConfig(name=name, platform=platform)
    if batched:
        config.max_batch_size = batching.max_batch_size if batching is not None else max_batch_size
    for spec in signature.inputs:
        config.input.add(name=spec.name, data_type=CONFIG_TYPES[spec.dtype], dims=_dims(spec, batched))
    for spec in signature.outputs:
        config.output.add(name=spec.name, data_type=CONFIG_TYPES[spec.dtype], dims=_dims(spec, batched))
    if batched and batching is not None:
        config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
    return config


def to_json(message: Message) -> dict[str, Any]:
    """A config (or statistics) message as Triton's REST JSON: proto field names, fields with default
    values printed, 64-bit integers as JSON numbers (protobuf's JSON mapping would quote them)."""
    document = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _numbers(message.DESCRIPTOR, document)


_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _numbers(descriptor: Descriptor, document: dict[str, Any]) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in document:
            continue
        value = document[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                document[field.name] = {k: _numbers(value_field.message_type, v) for k, v in value.items()}
            elif value_field.type in _INT64:
                document[field.name] = {k: int(v) for k, v in value.items()}
        elif field.message_type is not None:
            if isinstance(value, list):
                document[field.name] = [_numbers(field.message_type, v) for v in value]
            else:
                document[field.name] = _numbers(field.message_type, value)
        elif field.type in _INT64:
            document[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return document
