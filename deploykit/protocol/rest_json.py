"""TF Serving's REST JSON: predict requests (row ``instances`` / columnar ``inputs``) and responses.

Request values are converted to the dtypes of the signature being called, as TF Serving does;
``{"b64": "..."}`` carries binary strings; ``NaN``/``Infinity`` are accepted and emitted. Row
format answers ``{"predictions": ...}``, columnar ``{"outputs": ...}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from deploykit.errors import InvalidInput
from deploykit.protocol.tensor_codec import DEFAULT_MAX_TENSOR_BYTES, MAX_DIMS, check_shape
from deploykit.tensors import Signature, Tensors, TensorSpec, numpy_dtype

#: deploykit dtype -> TensorFlow's ``DataTypeString``, which TF Serving's type errors name.
_TF_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}

#: Python's JSON error -> RapidJSON's text for it (``GetParseError_En``), which TF Serving answers.
_RAPIDJSON_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


def _rapidjson_error(text: str, exc: json.JSONDecodeError) -> str:
    if exc.msg == "Expecting ',' delimiter":  # RapidJSON says which bracket was expected
        depth = []
        in_string = escaped = False
        for char in text[: exc.pos]:
            if in_string:
                in_string, escaped = (not (char == '"' and not escaped)), (char == "\\" and not escaped)
            elif char == '"':
                in_string = True
            elif char in "[{":
                depth.append(char)
            elif char in "]}" and depth:
                depth.pop()
        inside_array = bool(depth) and depth[-1] == "["
        bracket = "']' after an array element" if inside_array else "'}' after an object member"
        return f"Missing a comma or {bracket}."
    return next((text for prefix, text in _RAPIDJSON_ERRORS.items() if exc.msg.startswith(prefix)), exc.msg)


def parse_body(body: bytes) -> dict[str, Any]:
    """The request JSON object; malformed JSON is INVALID_ARGUMENT in TF Serving's words
    (RapidJSON's error texts; like its ``kParseStopWhenDoneFlag``, text after the document is ignored)."""
    if not body:
        raise InvalidInput("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") from None
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if start == len(text):
        raise InvalidInput(f"JSON Parse error: The document is empty. at offset: {start}")
    try:
        document, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"JSON Parse error: {_rapidjson_error(text, exc)} at offset: {exc.pos}") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise InvalidInput(f"JSON Parse error: {exc}") from None
    except RecursionError:
        raise InvalidInput("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(document, dict):
        shown = json.dumps(document, separators=(",", ":"), allow_nan=True)[:1024]
        raise InvalidInput(f"JSON Value: {shown} Is not object")
    return document


def signature_name(document: dict[str, Any]) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' key must be a string value.")
    return name


def _strings(value: Any) -> Any:
    """Nested lists of str / {"b64": ...} -> nested lists of bytes."""
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise InvalidInput(f'expected a string or {{"b64": ...}}, got {json.dumps(value)[:100]}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as exc:
            raise InvalidInput(f"invalid base64 in 'b64' value: {exc}") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidInput(f"expected a string value, got {json.dumps(value)[:100]}")


def _depth(value: Any) -> int:
    """How deeply lists nest along the first elements (a tensor's rank, if it is one)."""
    depth = 0
    while isinstance(value, list) and depth <= MAX_DIMS:
        depth += 1
        value = value[0] if value else None
    return depth


def _tensor(spec: TensorSpec, value: Any, max_bytes: int) -> np.ndarray:
    if _depth(value) > MAX_DIMS:
        raise InvalidInput(f"input '{spec.name}': values nest more than {MAX_DIMS} deep; at most {MAX_DIMS} dimensions")
    if spec.dtype == "string":
        nested = _strings(value)
        try:
            shape = np.shape(nested) if isinstance(nested, list) else ()
        except ValueError:
            raise InvalidInput(f"input '{spec.name}': values do not form a tensor (ragged nesting)") from None
        check_shape(spec.name, shape, 8, spec.dtype, max_bytes)
        array = np.empty(shape, dtype=object)
        array[...] = nested if isinstance(nested, list) else nested
        return array
    try:
        array = np.array(value)
    except ValueError as exc:  # ragged nesting
        raise InvalidInput(f"input '{spec.name}': values do not form a tensor ({exc})") from None
    target = numpy_dtype(spec.dtype)
    check_shape(spec.name, array.shape, target.itemsize, spec.dtype, max_bytes)
    if not _fits(array, target):
        expected = _TF_TYPE_NAMES.get(spec.dtype, spec.dtype)
        raise InvalidInput(f"input '{spec.name}': JSON values are not of expected type: {expected}")
    return array.astype(target)


def _fits(array: np.ndarray, target: np.dtype) -> bool:
    """Whether JSON numbers/bools can become ``target`` without losing meaning."""
    kind = array.dtype.kind
    if kind not in "biuf":  # strings, objects (nulls, mixed types)
        return False
    fractional = kind == "f" and (target.kind == "b" or not np.all(np.mod(array, 1) == 0))
    if target.kind in "biu" and fractional:  # 1.5 is not an integer; 2.0 is accepted
        return False
    if target.kind in "iu" and array.size:  # no silent wrap-around: uint8 300 is an error, not 44
        info = np.iinfo(target)
        return bool(array.min() >= info.min and array.max() <= info.max)
    return True


def decode_inputs(
    document: dict[str, Any], signature: Signature, max_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> tuple[Tensors, bool]:
    """Tensors of a predict request, and whether it used the row (``instances``) format. Each
    tensor is checked against ``max_bytes`` before it is converted to the signature's dtype."""
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise InvalidInput(
            "JSON Value: Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if not has_instances and not has_inputs:
        raise InvalidInput("Missing 'inputs' or 'instances' key")
    specs = {t.name: t for t in signature.inputs}
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise InvalidInput("JSON Value: Expecting 'instances' to be an list/array")
        if not instances:
            raise InvalidInput("JSON Value: No values in 'instances' array")
        if all(isinstance(i, dict) for i in instances) and not (len(specs) == 1 and _is_b64(instances[0])):
            names = set(instances[0])
            if any(set(i) != names for i in instances):
                raise InvalidInput("JSON Value: all 'instances' must have the same named inputs")
            columns = {n: [i[n] for i in instances] for n in names}
        elif len(specs) == 1:
            columns = {next(iter(specs)): instances}
        else:
            raise InvalidInput(
                f"JSON Value: 'instances' must be objects keyed by input name; the signature has "
                f"{len(specs)} inputs: {sorted(specs)}"
            )
        return _typed(columns, specs, max_bytes), True
    inputs = document["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return _typed(inputs, specs, max_bytes), False
    if len(specs) != 1:
        raise InvalidInput(f"JSON Value: 'inputs' must be an object keyed by input name: {sorted(specs)}")
    return _typed({next(iter(specs)): inputs}, specs, max_bytes), False


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _typed(columns: dict[str, Any], specs: dict[str, TensorSpec], max_bytes: int) -> Tensors:
    # Unknown names are passed through as float32 so the core reports the signature mismatch.
    return {
        name: _tensor(specs.get(name, TensorSpec(name, "float32", ())), value, max_bytes)
        for name, value in columns.items()
    }


def _json_value(name: str, array: np.ndarray) -> Any:
    if array.dtype == object:
        if name.endswith("_bytes"):
            encode = lambda b: {"b64": base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            encode = lambda b: b.decode("utf-8", errors="replace") if isinstance(b, bytes) else str(b)  # noqa: E731
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.ndim else encode(array.item())
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        array = array.astype(np.float64)
    return array.tolist()


def encode_outputs(outputs: Tensors, row_format: bool) -> dict[str, Any]:
    """``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar)."""
    if not row_format:
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return {"outputs": _json_value(name, value)}
        return {"outputs": {name: _json_value(name, value) for name, value in outputs.items()}}
    for name, value in outputs.items():
        if value.ndim == 0:
            raise InvalidInput(f"Tensor name: {name} has no shape information ")
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"predictions": _json_value(name, value)}
    sizes = {value.shape[0] for value in outputs.values()}
    if len(sizes) != 1:
        name = next(iter(outputs))
        raise InvalidInput(f"Tensor name: {name} has inconsistent batch size: {sorted(sizes)}")
    columns = {name: _json_value(name, value) for name, value in outputs.items()}
    return {"predictions": [{name: columns[name][i] for name in outputs} for i in range(sizes.pop())]}


def dumps(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True).encode("utf-8")
