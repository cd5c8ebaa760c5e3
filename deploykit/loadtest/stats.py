"""Histogram arithmetic: merging encoded HDR histograms, summaries, stability."""

from __future__ import annotations

import base64
import math

from hdrh.histogram import HdrHistogram

from deploykit.loadtest.worker import new_histogram

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def merge(encoded: list[bytes]) -> HdrHistogram:
    merged = new_histogram()
    for blob in encoded:
        if blob:
            merged.decode_and_add(blob)
    return merged


def summary_ms(histogram: HdrHistogram) -> dict[str, float | None]:
    """min/mean/stdev/percentiles/max in milliseconds (None when nothing was recorded)."""
    keys = ["min", "mean", "stdev", *PERCENTILES, "max"]
    if histogram.get_total_count() == 0:
        return dict.fromkeys(keys)
    values = {
        "min": histogram.get_min_value(),
        "mean": histogram.get_mean_value(),
        "stdev": histogram.get_stddev(),
        **{k: histogram.get_value_at_percentile(p) for k, p in PERCENTILES.items()},
        "max": histogram.get_max_value(),
    }
    return {k: round(v / 1000.0, 4) for k, v in values.items()}


def spectrum_ms(histogram: HdrHistogram) -> list[tuple[float, float]]:
    """(percentile, latency ms) points for a percentile-spectrum plot."""
    if histogram.get_total_count() == 0:
        return []
    points = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100]
    return [(p, histogram.get_value_at_percentile(p) / 1000.0) for p in points]


def blob(histogram: HdrHistogram) -> str:
    """The histogram encoded as text for JSON reports (re-analysable exactly with :func:`from_blob`)."""
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else base64.b64encode(encoded).decode("ascii")


def from_blob(text: str) -> HdrHistogram:
    return merge([text.encode("ascii")])


def within(values: list[float], tolerance: float) -> bool:
    """All values within ``tolerance`` (a fraction) of their mean."""
    mean = sum(values) / len(values)
    if mean == 0:
        return all(v == 0 for v in values)
    return all(abs(v - mean) <= tolerance * mean for v in values)


def mean_ci95(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and the half-width of a 95% confidence interval (normal approximation over samples);
    None where there are too few samples (JSON has no NaN)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)
