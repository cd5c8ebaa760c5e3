"""The CI gate: thresholds (``p99<20ms``, ``error_rate<0.001``, ``rps>=500``) and regressions
against a baseline report (``--max-regression p99=10%``).

Latency metrics: ``min mean stdev p50 p90 p95 p99 p999 max`` of the corrected latency, with a unit
(``us``, ``ms``, ``s``; default ms); ``service_p99`` etc. for service time. Rates: ``rps`` (achieved),
``error_rate`` and ``drop_rate`` (fractions). Every level of a sweep must pass.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import asdict, dataclass

from deploykit.errors import UsageError
from deploykit.loadtest.runner import LevelResult

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_LATENCY = ("min", "mean", "stdev", "p50", "p90", "p95", "p99", "p999", "max")
_THRESHOLD = re.compile(
    r"^\s*(?P<metric>[a-z_0-9]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[0-9.eE+-]+)\s*(?P<unit>us|ms|s)?\s*$"
)
_REGRESSION = re.compile(r"^\s*(?P<metric>[a-z_0-9]+)\s*=\s*(?P<value>[0-9.]+)\s*%\s*$")
METRICS = (*_LATENCY, *(f"service_{m}" for m in _LATENCY), "rps", "error_rate", "drop_rate")
#: Metrics where larger is better (a regression is a decrease).
HIGHER_IS_BETTER = {"rps"}


def metric(result: LevelResult | dict, name: str) -> float | None:
    """Value of ``name`` in a level result (or its JSON form), latencies in ms."""
    data = result.to_dict() if isinstance(result, LevelResult) else result
    if name in _LATENCY:
        return data["latency_ms"][name]
    if name.startswith("service_") and name[8:] in _LATENCY:
        return data["service_time_ms"][name[8:]]
    if name == "rps":
        return data["achieved_rps"]
    count = data["count"]
    total = count["ok"] + count["error"]
    if name == "error_rate":
        return count["error"] / total if total else 0.0
    if name == "drop_rate":
        scheduled = total + count["dropped"]
        return count["dropped"] / scheduled if scheduled else 0.0
    raise UsageError(f"unknown metric {name!r}; expected one of: {', '.join(METRICS)}")


@dataclass
class Check:
    """One evaluated threshold or regression check."""

    name: str
    level: float
    observed: float | None
    limit: str
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Threshold:
    expression: str
    metric: str
    op: str
    value_ms_or_raw: float

    def evaluate(self, result: LevelResult | dict, label: str = "") -> Check:
        """Check one level (a result or its JSON form); ``label`` prefixes the check's name."""
        observed = metric(result, self.metric)
        passed = observed is not None and _OPS[self.op](observed, self.value_ms_or_raw)
        level = result.level if isinstance(result, LevelResult) else result["level"]
        name = f"{label}: {self.expression}" if label else self.expression
        return Check(name, level, observed, f"{self.op} {self.value_ms_or_raw:g}", passed)


def parse_threshold(text: str) -> Threshold:
    match = _THRESHOLD.match(text)
    if not match or match["metric"] not in METRICS:
        raise UsageError(
            f"cannot parse threshold {text!r}; expected METRIC OP VALUE[us|ms|s] with METRIC one of "
            f"{', '.join(METRICS)}, e.g. 'p99<20ms', 'error_rate<0.001', 'rps>=500'"
        )
    try:
        value = float(match["value"])
    except ValueError:
        raise UsageError(f"threshold {text!r}: {match['value']!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        # Every metric is a non-negative quantity: 'p99<-5ms' could never pass, 'p99>-5ms' never fail.
        raise UsageError(f"threshold {text!r}: the limit must be a non-negative number, got {match['value']}")
    is_latency = match["metric"] in _LATENCY or match["metric"].startswith("service_")
    if match["unit"] and not is_latency:
        raise UsageError(f"threshold {text!r}: {match['metric']} takes no unit")
    if is_latency:
        value *= _UNITS_MS[match["unit"] or "ms"]
    return Threshold(text.strip(), match["metric"], match["op"], value)


def parse_regression(text: str) -> tuple[str, float]:
    match = _REGRESSION.match(text)
    if not match or match["metric"] not in METRICS:
        raise UsageError(f"cannot parse --max-regression {text!r}; expected METRIC=PERCENT%, e.g. p99=10%")
    try:
        return match["metric"], float(match["value"]) / 100.0  # the pattern admits no sign
    except ValueError:
        raise UsageError(f"--max-regression {text!r}: {match['value']!r} is not a number") from None


def regressions(results: list[LevelResult], baseline: dict, limits: dict[str, float]) -> list[Check]:
    """Compare each level with the baseline level of the same mode and value."""
    base_levels = {(lv["mode"], float(lv["level"])): lv for lv in baseline.get("levels", [])}
    checks = []
    for result in results:
        base = base_levels.get((result.mode, float(result.level)))
        if base is None:
            raise UsageError(f"baseline has no {result.mode}-loop level {result.level:g} to compare with")
        for name, allowed in limits.items():
            now, before = metric(result, name), metric(base, name)
            if now is None or before is None:
                checks.append(Check(f"{name} regression", result.level, now, "baseline missing", False))
                continue
            if name in HIGHER_IS_BETTER:
                change = (before - now) / before if before else 0.0
            else:
                change = (now - before) / before if before else (0.0 if now == 0 else float("inf"))
            checks.append(
                Check(
                    f"{name} vs baseline ({before:.4g})",
                    result.level,
                    now,
                    f"<= {allowed:.0%} worse (observed {change:+.1%})",
                    change <= allowed,
                )
            )
    return checks
