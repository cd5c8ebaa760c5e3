"""Numerical parity between a source and an exported artifact.

An output passes when, elementwise, ``|got - ref| <= atol + rtol * |ref|`` (numpy's ``allclose``),
names, dtypes and shapes agree, and NaN/Inf appear exactly where the source has them. Every
comparison also reports ``needed_atol``: the smallest ``atol`` that would pass at the given
``rtol``, so a failing export says by how much it failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deploykit.errors import UsageError
from deploykit.tensors import Tensors


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


#: Defaults per dtype; integer, bool and string outputs must match exactly.
DEFAULT_TOLERANCES = {
    "float16": Tolerance(1e-3, 1e-3),
    "bfloat16": Tolerance(1e-2, 1e-2),
    "float32": Tolerance(1e-5, 1e-5),
    "float64": Tolerance(1e-7, 1e-7),
}
EXACT = Tolerance(0.0, 0.0)


@dataclass
class OutputParity:
    """Comparison of one output at one batch size."""

    output: str
    batch_size: int
    passed: bool
    atol: float
    rtol: float
    max_abs: float | None = None
    max_rel: float | None = None
    needed_atol: float | None = None
    problem: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """``NAME=ATOL`` or ``NAME=ATOL:RTOL`` (RTOL defaults to ATOL)."""
    name, sep, values = text.partition("=")
    try:
        parts = [float(v) for v in values.split(":")]
        if not sep or not name or len(parts) not in (1, 2) or min(parts) < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"cannot parse tolerance {text!r}; expected OUTPUT=ATOL or OUTPUT=ATOL:RTOL") from None
    return name, Tolerance(parts[0], parts[-1])


def tolerance_for(name: str, dtype: str, overrides: dict[str, Tolerance], default: Tolerance | None) -> Tolerance:
    if name in overrides:
        return overrides[name]
    if dtype in DEFAULT_TOLERANCES:
        return default or DEFAULT_TOLERANCES[dtype]
    return EXACT


def _problem(output: str, batch: int, tol: Tolerance, problem: str) -> OutputParity:
    return OutputParity(output, batch, False, tol.atol, tol.rtol, problem=problem)


def compare(
    reference: Tensors,
    got: Tensors,
    batch_size: int,
    overrides: dict[str, Tolerance] | None = None,
    default: Tolerance | None = None,
) -> list[OutputParity]:
    """Compare every output of ``got`` with ``reference``; one row per output (and per stray name)."""
    overrides = overrides or {}
    rows: list[OutputParity] = []
    for name in sorted(set(got) - set(reference)):
        rows.append(
            _problem(name, batch_size, EXACT, f"unexpected output {name!r}; the source has {sorted(reference)}")
        )
    for name, ref in reference.items():
        ref = np.asarray(ref)
        tol = tolerance_for(name, str(ref.dtype), overrides, default)
        if name not in got:
            rows.append(_problem(name, batch_size, tol, f"output missing; the artifact has {sorted(got)}"))
            continue
        out = np.asarray(got[name])
        if out.dtype != ref.dtype:
            rows.append(_problem(name, batch_size, tol, f"dtype {out.dtype}, expected {ref.dtype}"))
            continue
        if out.shape != ref.shape:
            rows.append(_problem(name, batch_size, tol, f"shape {out.shape}, expected {ref.shape}"))
            continue
        if not (np.issubdtype(ref.dtype, np.inexact) or ref.dtype.name == "bfloat16"):
            equal = bool(np.array_equal(out, ref))
            rows.append(
                OutputParity(
                    name,
                    batch_size,
                    equal,
                    0.0,
                    0.0,
                    None,
                    None,
                    None,
                    None if equal else "values differ (exact match required)",
                )
            )
            continue
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        ref_bad, out_bad = ~np.isfinite(ref64), ~np.isfinite(out64)
        if not np.array_equal(ref_bad, out_bad) or not np.array_equal(ref64[ref_bad], out64[out_bad], equal_nan=True):
            rows.append(
                _problem(
                    name,
                    batch_size,
                    tol,
                    f"NaN/Inf mismatch: {int(out_bad.sum())} non-finite value(s), source has {int(ref_bad.sum())}",
                )
            )
            continue
        diff = np.abs(out64 - ref64)[~ref_bad]
        scale = np.abs(ref64)[~ref_bad]
        max_abs = float(diff.max(initial=0.0))
        max_rel = float((diff / np.maximum(scale, np.finfo(np.float64).tiny)).max(initial=0.0))
        needed = float(np.maximum(diff - tol.rtol * scale, 0.0).max(initial=0.0))
        rows.append(OutputParity(name, batch_size, needed <= tol.atol, tol.atol, tol.rtol, max_abs, max_rel, needed))
    return rows
