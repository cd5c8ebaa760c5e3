"""``tf.Example`` inputs of Classify and Regress: TF Serving's REST JSON to protos, and protos to the
serialized examples a signature is fed.

JSON (``util/json_tensor.cc``): ``{"signature_name"?, "context"?: {...}, "examples": [{...}, ...]}``;
each feature is one value or a list. The first value decides the feature's kind, as in TF Serving:
a JSON integer or bool is ``int64_list``, a decimal number ``float_list``, a string or
``{"b64": ...}`` ``bytes_list``; a later value of another kind is an error.

With a context (``ExampleListWithContext``), TF Serving feeds each example as the serialized context
followed by the serialized example: parsed back, that is one Example holding both, the example's
own value winning for a feature present in both (a map entry read later replaces an earlier one).
"""

from __future__ import annotations

import base64
from typing import Any

from deploykit.errors import InvalidInput
from deploykit.protocol.protos import example_pb2
from deploykit.protocol.protos import serving_pb2 as pb

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_type(value: Any) -> str:
    """rapidjson's type names, which TF Serving's messages use."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    names: dict[type, str] = {dict: "Object", list: "Array", str: "String"}
    return names.get(type(value), "Number")


def _kind_of(value: Any, name: str) -> str:
    if isinstance(value, int):  # bools too: TF Serving stores them as 1 / 0
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidInput(f"Feature: {name} has an integer outside int64. Only int64 is supported.")
        return "int64_list"
    if isinstance(value, float):
        return "float_list"
    if isinstance(value, str) or (isinstance(value, dict) and set(value) == {"b64"}):
        return "bytes_list"
    raise InvalidInput(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")


def _bytes(value: str | dict[str, str], name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Feature: {name} has an invalid 'b64' value: {exc}") from None


def feature(name: str, value: Any) -> example_pb2.Feature:
    """One JSON feature value (or list of values) as a ``Feature``."""
    values = value if isinstance(value, list) else [value]
    result = example_pb2.Feature()
    if not values:
        return result  # an empty list: a feature of no kind, as TF Serving makes it
    kind = _kind_of(values[0], name)
    for item in values:
        if _kind_of(item, name) != kind:
            raise InvalidInput(f"Unexpected element type in feature: {name} expecting type: {kind[: -len('_list')]}")
    target = getattr(result, kind).value
    if kind == "bytes_list":
        target.extend(_bytes(item, name) for item in values)
    else:
        target.extend(int(item) if kind == "int64_list" else item for item in values)
    return result


def example(document: Any) -> example_pb2.Example:
    """A JSON object of features as an ``Example``."""
    if not isinstance(document, dict):
        raise InvalidInput(f"Example must be JSON object but got JSON {_json_type(document)}")
    result = example_pb2.Example()
    for name, value in document.items():
        result.features.feature[name].CopyFrom(feature(name, value))
    return result


def input_from_json(examples: Any, context: Any = None) -> pb.Input:
    """The ``Input`` of a classify/regress request: an example list, with a context when given."""
    if not isinstance(examples, list):
        raise InvalidInput("JSON Value: Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidInput("JSON Value: 'examples' value is an empty array")
    request_input = pb.Input()
    if context is None:
        request_input.example_list.examples.extend(example(e) for e in examples)
    else:
        request_input.example_list_with_context.context.CopyFrom(example(context))
        request_input.example_list_with_context.examples.extend(example(e) for e in examples)
    return request_input


def parse_request(document: dict[str, Any]) -> pb.Input:
    """The ``Input`` of a REST ``:classify`` / ``:regress`` body (``signature_name`` is read apart)."""
    if "examples" not in document:
        # TF Serving says "classify" for :regress too (one template serves both).
        raise InvalidInput("JSON Value: When method is classify, key 'examples' is expected and was not found")
    return input_from_json(document["examples"], document.get("context"))


def serialized(request_input: pb.Input) -> list[bytes]:
    """The examples as fed to the signature: one serialized Example each, context merged in."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in with_context.examples]
    return []  # no input: the service answers "Input is empty."


def to_json(value: Any) -> Any:
    """Feature values as JSON for a REST request: ``bytes`` become ``{"b64": ...}``, numpy scalars
    and arrays plain numbers and lists."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):  # numpy
        return to_json(value.tolist())
    return value
