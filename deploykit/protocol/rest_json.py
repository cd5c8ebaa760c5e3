"""TF Serving's REST JSON: predict requests (row ``instances`` / columnar ``inputs``) and responses.

Request values are converted to the dtypes of the signature being called, as TF Serving does;
``{"b64": "..."}`` carries binary strings; ``NaN``/``Infinity`` are accepted and emitted. Row
format answers ``{"predictions": ...}``, columnar ``{"outputs": ...}``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from deploykit.errors import InvalidInput
from deploykit.tensors import Signature, Tensors, TensorSpec, numpy_dtype


def parse_body(body: bytes) -> dict[str, Any]:
    """The request JSON object; malformed JSON is INVALID_ARGUMENT."""
    try:
        document = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"JSON Parse error: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput("JSON Value: request body must be a JSON object")
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


def _tensor(spec: TensorSpec, value: Any) -> np.ndarray:
    if spec.dtype == "string":
        nested = _strings(value)
        try:
            shape = np.shape(nested) if isinstance(nested, list) else ()
        except ValueError:
            raise InvalidInput(f"input '{spec.name}': values do not form a tensor (ragged nesting)") from None
        array = np.empty(shape, dtype=object)
        array[...] = nested if isinstance(nested, list) else nested
        return array
    try:
        array = np.array(value)
    except ValueError as exc:  # ragged nesting
        raise InvalidInput(f"input '{spec.name}': values do not form a tensor ({exc})") from None
    target = numpy_dtype(spec.dtype)
    if not _fits(array, target):
        raise InvalidInput(f"input '{spec.name}': JSON values are not of expected type: {spec.dtype}")
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


def decode_inputs(document: dict[str, Any], signature: Signature) -> tuple[Tensors, bool]:
    """Tensors of a predict request, and whether it used the row (``instances``) format."""
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
        return _typed(columns, specs), True
    inputs = document["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return _typed(inputs, specs), False
    if len(specs) != 1:
        raise InvalidInput(f"JSON Value: 'inputs' must be an object keyed by input name: {sorted(specs)}")
    return _typed({next(iter(specs)): inputs}, specs), False


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _typed(columns: dict[str, Any], specs: dict[str, TensorSpec]) -> Tensors:
    # Unknown names are passed through as float32 so the core reports the signature mismatch.
    return {name: _tensor(specs.get(name, TensorSpec(name, "float32", ())), value) for name, value in columns.items()}


def _json_value(name: str, array: np.ndarray) -> Any:
    if array.dtype == object:
        encode: Callable[[Any], Any]
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
