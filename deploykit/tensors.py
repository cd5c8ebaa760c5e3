"""Tensor specs and signatures: the framework-neutral description of a model's inputs and outputs.

Every layer (export, runtimes, protocol, server, client) speaks ``dict[str, numpy.ndarray]`` and
describes it with :class:`TensorSpec` / :class:`Signature`. Dynamic dimensions are ``None`` in
Python and ``-1`` in text and JSON, as in TensorFlow Serving's metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploykit.errors import UsageError

Tensors = dict[str, np.ndarray]

#: dtype names deploykit accepts in specs, mapped to numpy. ``bfloat16`` needs ml_dtypes.
DTYPE_NAMES = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "string",
)


def numpy_dtype(name: str) -> np.dtype:
    """numpy dtype of a deploykit dtype name (``string`` is a bytes object array)."""
    if name == "string":
        return np.dtype(object)
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name not in DTYPE_NAMES:
        raise UsageError(f"unknown dtype {name!r}; expected one of: {', '.join(DTYPE_NAMES)}")
    return np.dtype(name)


def dtype_name(dtype: Any) -> str:
    """deploykit dtype name of a numpy dtype (object/bytes/str arrays are ``string``)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "string"
    name = dtype.name
    if name not in DTYPE_NAMES:
        raise UsageError(f"dtype {name} is not supported; expected one of: {', '.join(DTYPE_NAMES)}")
    return name


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one tensor; ``None`` marks a dynamic dimension, and a ``shape`` of
    ``None`` an unknown rank (SavedModel signatures may declare one)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    def to_dict(self) -> dict[str, Any]:
        shape = None if self.shape is None else [-1 if d is None else d for d in self.shape]
        return {"name": self.name, "dtype": self.dtype, "shape": shape}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        if data["shape"] is None:
            return cls(data["name"], data["dtype"], None)
        shape = tuple(None if d is None or d < 0 else int(d) for d in data["shape"])
        return cls(data["name"], data["dtype"], shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.name}:{self.dtype}[?]"
        dims = ",".join("-1" if d is None else str(d) for d in self.shape)
        return f"{self.name}:{self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    """Ordered inputs and outputs of a model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
        )


#: Size given to dynamic dimensions other than the batch dimension when generating inputs.
DYNAMIC_DIM_SIZE = 8


def random_inputs(signature: Signature, batch_size: int, seed: int) -> Tensors:
    """Seeded inputs for ``signature``: normal floats, small non-negative integers, random bools."""
    rng = np.random.default_rng([seed, batch_size])
    inputs: Tensors = {}
    for spec in signature.inputs:
        if spec.shape is None:
            raise UsageError(f"input {spec.name!r} has unknown rank; give the data explicitly")
        shape = [batch_size if i == 0 and d is None else d or DYNAMIC_DIM_SIZE for i, d in enumerate(spec.shape)]
        dtype = numpy_dtype(spec.dtype)
        if spec.dtype == "string":
            raise UsageError(f"input {spec.name!r} is a string tensor; give the data explicitly")
        if np.issubdtype(dtype, np.floating) or spec.dtype == "bfloat16":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif spec.dtype == "bool":
            inputs[spec.name] = rng.random(shape) < 0.5
        else:
            inputs[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
    return inputs


_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w./-]*):(?P<dtype>\w+)\[(?P<dims>[-\d,\s]*)\]$")


#: Largest static dimension a tensor spec may declare (frameworks index dimensions with int32/int64;
#: beyond this every converter fails with an overflow deep in C++).
MAX_DIMENSION = 2**31 - 1


def parse_tensor_spec(text: str) -> TensorSpec:
    """Parse ``name:dtype[d0,d1,...]`` (``-1`` for a dynamic dimension), e.g. ``x:float32[-1,3,224,224]``."""
    match = _SPEC.match(text.strip())
    if not match:
        raise UsageError(f"cannot parse tensor spec {text!r}; expected NAME:DTYPE[DIMS], e.g. x:float32[-1,3,224,224]")
    numpy_dtype(match["dtype"])  # validates the name
    dims: list[int | None] = []
    parts = [p.strip() for p in match["dims"].split(",")] if match["dims"].strip() else []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise UsageError(
                f"tensor spec {text!r}: dimension {part!r} is not an integer; expected e.g. x:float32[-1,3,224,224]"
            ) from None
        if value == 0 or value < -1 or value > MAX_DIMENSION:
            raise UsageError(
                f"tensor spec {text!r}: dimension {value} must be -1 (dynamic) or 1..{MAX_DIMENSION} (2**31-1)"
            )
        dims.append(None if value == -1 else value)
    return TensorSpec(match["name"], match["dtype"], tuple(dims))
