"""The verdict: per-path latency and throughput with 95% confidence intervals, the plain-language
conclusion, and the "TensorFlow is easier to deploy, PyTorch easier to learn" claim measured per
framework."""

from __future__ import annotations

import contextlib
import re
from importlib import metadata
from typing import TYPE_CHECKING

#: Which production engines load each format (as documented by each engine; deploykit serve loads
#: every format it exports). Triton: onnxruntime, pytorch (TorchScript; torch.export/AOTInductor
#: programs only through its Python backend) and tensorflow (SavedModel) backends.
ENGINES_ACCEPTING = {
    "savedmodel": ["TF Serving", "Triton (tensorflow backend)", "deploykit serve"],
    "onnx": ["Triton (onnxruntime backend)", "deploykit serve"],
    "torchscript": ["Triton (pytorch backend)", "deploykit serve"],
    "pt2": ["deploykit serve"],
    "aoti": ["deploykit serve"],
}
#: The distributions each serving path needs beside deploykit's base install.
SERVING_DISTRIBUTIONS = {
    "onnx": ["deploykit", "onnxruntime-gpu", "onnxruntime"],
    "torchscript": ["deploykit", "torch"],
    "pt2": ["deploykit", "torch"],
    "aoti": ["deploykit", "torch"],
    "savedmodel": ["deploykit", "tensorflow"],
}

if TYPE_CHECKING:
    from deploykit.repository import Manifest


def _requirements(dist: metadata.Distribution) -> list[str]:
    """Names of the distributions ``dist`` requires (no extras)."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        with contextlib.suppress(Exception):
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                names.append(req.name)
    return names


def environment_mb(roots: list[str]) -> float | None:
    """Installed size of ``roots`` and everything they require (each distribution counted once)."""
    seen: set[str] = set()
    total = 0
    stack = list(roots)
    while stack:
        name = re.sub(r"[-_.]+", "-", stack.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or []:
            with contextlib.suppress(OSError):
                total += file.locate().stat().st_size
        stack += _requirements(dist)
    return round(total / 2**20, 1) if total else None


def path_rows(paths, batch1: dict | None, under_load: dict | None) -> list[dict]:
    """One row per deploy path with p50/p99/throughput and their 95% CIs at batch 1 and under load."""

    def level(report: dict | None, target: str) -> dict | None:
        if not report:
            return None
        lv = next((lv for lv in report["levels"] if lv["target"] == target), None)
        if lv is None:
            return None
        return {
            "p50_ms": lv["latency_ms"]["p50"],
            "p99_ms": lv["latency_ms"]["p99"],
            "rps": lv["achieved_rps"],
            "p50_window_mean_ms": lv["window_p50_ms_ci95"][0],
            "p50_ci95_ms": lv["window_p50_ms_ci95"][1],
            "rps_window_mean": lv["window_rps_ci95"][0],
            "rps_ci95": lv["window_rps_ci95"][1],
            "errors": lv["count"]["error"],
            "valid": lv["valid"],
            "breakdown_ms": lv.get("breakdown_ms", {}),
        }

    rows = []
    for path in paths:
        engine = ""
        for report in (batch1, under_load):
            for part in (report or {}).get("engine", "").split("; "):
                if part.startswith(path.target + ": "):
                    engine = part.split(": ", 1)[1]
        rows.append(
            {
                "path": path.name,
                "target": path.target,
                "artifact": path.artifact,
                "framework": path.framework,
                "format": path.format,
                "protocol": path.protocol,
                "server": path.server,
                "engine": engine,
                "batch1": level(batch1, path.target),
                "under_load": level(under_load, path.target),
            }
        )
    return rows


def _best(rows: list[dict], key: str, metric: str, ci: str, lower_is_better: bool) -> str | None:
    """The best path by ``metric``, or 'not distinguishable' when its 95% CI overlaps the runner-up's."""
    ranked = [r for r in rows if r[key] and r[key][metric] is not None]
    if not ranked:
        return None
    ranked.sort(key=lambda r: r[key][metric], reverse=not lower_is_better)
    best = ranked[0]
    if len(ranked) == 1:
        return f"{best['path']} (the only path measured)"
    second = ranked[1]

    def interval(r):
        m, h = r[key][metric], r[key][ci] or 0.0
        return m - h, m + h

    (lo1, hi1), (lo2, hi2) = interval(best), interval(second)
    if lo1 <= hi2 and lo2 <= hi1:
        tied = [r["path"] for r in ranked if interval(r)[0] <= hi1 and lo1 <= interval(r)[1]]
        return f"not distinguishable: {', '.join(tied)} (95% confidence intervals overlap)"
    return f"{best['path']} (runner-up {second['path']}; 95% confidence intervals do not overlap)"


def conclusion(rows: list[dict], parity_rows: list[dict], export: dict) -> dict:
    """The plain-language verdict of one model."""
    agree = bool(parity_rows) and all(r["passed"] for r in parity_rows)
    exported = all(a["passed"] for a in export["artifacts"])
    fastest = _best(rows, "batch1", "p50_window_mean_ms", "p50_ci95_ms", lower_is_better=True)
    most = _best(rows, "under_load", "rps_window_mean", "rps_ci95", lower_is_better=False)
    text = []
    if fastest:
        text.append(f"Fastest at batch 1 (p50, concurrency 1): {fastest}.")
    if most:
        text.append(f"Most throughput under load: {most}.")
    text.append(
        "All deploy paths agree numerically with the source (golden outputs over the wire, recorded tolerances)."
        if agree and exported
        else "NOT all deploy paths agree numerically: see the parity tables."
    )
    return {
        "fastest_batch1": fastest,
        "most_throughput_under_load": most,
        "agree_numerically": agree and exported,
        "text": " ".join(text),
    }


def framework_claim(export: dict, servers: list[dict], manifests: dict[str, Manifest]) -> dict:
    """ "TF easier to deploy, PyTorch easier to learn", as measured per framework."""
    claim = {}
    for framework in sorted({a["framework"] for a in export["artifacts"]}):
        own = [a for a in export["artifacts"] if a["framework"] == framework]
        cold = {}
        for server in servers:
            for a in own:
                if a["name"] in server["models"]:
                    cold[a["format"]] = {"server": server["name"], "cold_start_s": server["cold_start_s"]}
        claim[framework] = {
            "formats_attempted": [a["format"] for a in own],
            "first_attempt_ok": [a["format"] for a in own if a["passed"]],
            "first_attempt_failed": {a["format"]: a["error"] for a in own if not a["passed"]},
            "converter_warnings": {
                a["format"]: len(manifests[a["name"]].warnings) if a["name"] in manifests else 0 for a in own
            },
            "export_s": {a["format"]: a["export_s"] for a in own},
            "validate_s": {a["format"]: a["validate_s"] for a in own},
            "serving_environment_mb": {
                a["format"]: environment_mb(SERVING_DISTRIBUTIONS.get(a["format"], ["deploykit"])) for a in own
            },
            "cold_start": cold,
            "engines_accepting": {a["format"]: ENGINES_ACCEPTING.get(a["format"], ["deploykit serve"]) for a in own},
        }
    return claim
