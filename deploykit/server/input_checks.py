"""A request's inputs and output filter checked against a signature, with TF Serving's error texts
(clients' error handling keys on them)."""

from __future__ import annotations

import numpy as np

from deploykit.errors import InvalidInput
from deploykit.tensors import Signature, Tensors, TensorSpec, dtype_name


def _braces(names) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def _shape_text(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def check_inputs(signature: Signature, inputs: Tensors, *, check_shapes: bool = True) -> None:
    """Names, dtypes and shapes of ``inputs`` against ``signature``; :class:`InvalidInput` otherwise.

    ``check_shapes=False`` is for models whose declared shapes are advisory (TF1 graphs, which TF
    Serving feeds without a shape check): names and dtypes are still checked.
    """
    expected = {t.name for t in signature.inputs}
    sent = set(inputs)
    if sent != expected:
        # TF Serving's wording (predict_util.cc), so existing clients' error handling keeps working.
        raise InvalidInput(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({_braces(sent)}) != "
            f"len({_braces(expected)}). Sent extra: {_braces(sent - expected)}. "
            f"Missing but required: {_braces(expected - sent)}."
        )
    for index, spec in enumerate(signature.inputs):
        _check_dtype(index, spec, inputs[spec.name])
        if check_shapes:
            _check_shape(spec, inputs[spec.name])


#: TensorFlow's DataTypeString for the deploykit dtype names that differ from it.
_TF_DTYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


def _check_dtype(index: int, spec: TensorSpec, value: np.ndarray) -> None:
    got = dtype_name(value.dtype)
    if got != spec.dtype:
        # TensorFlow's own text first (FunctionCallFrame::SetArgs, what TF Serving answers), then the tensor by name.
        raise InvalidInput(
            f"Expects arg[{index}] to be {_TF_DTYPE_NAMES.get(spec.dtype, spec.dtype)} but "
            f"{_TF_DTYPE_NAMES.get(got, got)} is provided: input tensor '{spec.name}' has dtype {got}; "
            f"the signature expects {spec.dtype}"
        )


def _check_shape(spec: TensorSpec, value: np.ndarray) -> None:
    if spec.shape is None:  # unknown rank: any shape
        return
    if not spec.shape and value.ndim == 0:
        return
    fits = value.ndim == len(spec.shape) and all(
        d is None or d == n for d, n in zip(spec.shape, value.shape, strict=True)
    )
    if not fits:
        raise InvalidInput(
            f"input tensor '{spec.name}' has shape {_shape_text(value.shape)}; "
            f"the signature expects {_shape_text(spec.shape)} (-1 = any size)"
        )


def select_outputs(signature: Signature, output_filter: list[str]) -> list[str]:
    """Output names to return: all, or the filter after TF Serving's checks."""
    if not output_filter:
        return signature.output_names
    seen: set[str] = set()
    known = set(signature.output_names)
    for alias in output_filter:
        if alias in seen:
            raise InvalidInput(f"duplicate output tensor alias: {alias}")
        if alias not in known:
            raise InvalidInput(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{_braces(known)}."
            )
        seen.add(alias)
    return list(output_filter)
