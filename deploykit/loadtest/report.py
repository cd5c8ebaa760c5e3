"""Load-test reports: JSON (with encoded histograms, re-analysable), CSV, Markdown (CI job summary),
self-contained HTML with plots, and JUnit XML. The format is chosen by the output file's extension."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import platform
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from deploykit import __version__
from deploykit.errors import UsageError

SCHEMA_VERSION = 1
FORMATS = (".json", ".csv", ".md", ".html", ".xml")
EXIT_OK, EXIT_THRESHOLDS, EXIT_INVALID = 0, 99, 4  # 2 and 3 are raised as UsageError / Unreachable


def environment() -> dict[str, Any]:
    from deploykit.doctor import gpus, package_versions

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {
        k: v
        for k, v in package_versions().items()
        if v and k in ("deploykit", "numpy", "grpcio", "protobuf", "onnxruntime", "onnxruntime-gpu")
    }
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus(),
        "packages": versions,
    }


def verdict(levels: list[dict], checks: list[dict]) -> dict[str, Any]:
    """Exit code by the contract: invalid runs (4) take precedence over failed thresholds (99)."""
    valid = all(lv["valid"] for lv in levels)
    passed = all(c["passed"] for c in checks)
    code = EXIT_INVALID if not valid else EXIT_THRESHOLDS if not passed else EXIT_OK
    return {"valid": valid, "thresholds_passed": passed, "exit_code": code}


def build(
    target: str,
    engine: str,
    payload: dict,
    settings: dict,
    levels: list[dict],
    checks: list[dict],
    kind: str = "loadtest",
    notes: list[str] = (),
) -> dict[str, Any]:
    from deploykit.loadtest.runner import stability_rule

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "tool": f"deploykit {__version__}",
        "target": target,
        "engine": engine,
        "payload": payload,
        "settings": settings,
        "environment": environment(),
        "levels": levels,
        "checks": checks,
        "verdict": verdict(levels, checks),
        "stability_rule": stability_rule(settings),
        "notes": list(notes),
    }


# ----------------------------------------------------------------------------------------------- writers

CSV_COLUMNS = (
    "target",
    "mode",
    "level",
    "achieved_rps",
    "ok",
    "error",
    "dropped",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "service_p99_ms",
    "send_lag_p99_ms",
    "stable",
    "valid",
)


def _rows(report: dict) -> list[dict]:
    rows = []
    for lv in report["levels"]:
        lat = lv["latency_ms"]
        rows.append(
            {
                "target": lv.get("target", report["target"]),
                "mode": lv["mode"],
                "level": lv["level"],
                "achieved_rps": lv["achieved_rps"],
                **lv["count"],
                **{f"{k}_ms": lat[k] for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")},
                "service_p99_ms": lv["service_time_ms"]["p99"],
                "send_lag_p99_ms": lv["send_lag_ms"]["p99"],
                "stable": lv["stable"],
                "valid": lv["valid"],
            }
        )
    return rows


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(_rows(report))
    return out.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


#: (row key, header) of the Markdown summary table.
MARKDOWN_COLUMNS = (
    ("target", "target"),
    ("mode", "mode"),
    ("level", "level"),
    ("achieved_rps", "achieved rps"),
    ("ok", "ok"),
    ("error", "errors"),
    ("dropped", "dropped"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("p999_ms", "p99.9 ms"),
    ("max_ms", "max ms"),
    ("service_p99_ms", "service p99 ms"),
    ("send_lag_p99_ms", "send lag p99 ms"),
    ("stable", "stable"),
    ("valid", "valid"),
)


def _markdown_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def to_markdown(report: dict) -> str:
    v = report["verdict"]
    status = "PASS" if v["exit_code"] == 0 else "INVALID RUN" if not v["valid"] else "THRESHOLDS FAILED"
    lines = [
        f"## deploykit {report['kind']}: {status}",
        "",
        f"Target `{report['target']}` served by **{report['engine']}**; payload "
        f"{report['payload'].get('bytes', '?')} bytes ({report['payload'].get('encoding', '')}).",
        "",
        _markdown_row(header for _, header in MARKDOWN_COLUMNS),
        _markdown_row("---" if key in ("target", "mode", "stable", "valid") else "---:" for key, _ in MARKDOWN_COLUMNS),
    ]
    lines += [_markdown_row(_fmt(row[key]) for key, _ in MARKDOWN_COLUMNS) for row in _rows(report)]
    lines += _breakdown_lines(report)
    if report.get("stability_rule"):
        lines += ["", f"Stability: {report['stability_rule']}."]
    lines += [f"Note: {note}." for note in report.get("notes", [])]
    reasons = [
        f"- {lv.get('target', report['target'])} at {lv['level']:g}: {reason}"
        for lv in report["levels"]
        for reason in lv["invalid_reasons"]
    ]
    if reasons:
        lines += ["", "**Invalid measurements:**", *reasons]
    warnings = [
        f"- {lv.get('target', report['target'])} at {lv['level']:g}: {warning}"
        for lv in report["levels"]
        for warning in lv.get("warnings", [])
    ]
    if warnings:
        lines += ["", "**Warnings:**", *warnings]
    errors: dict[str, int] = {}
    for lv in report["levels"]:
        for code, n in lv["status_codes"].items():
            if code != "OK":
                errors[code] = errors.get(code, 0) + n
    if errors:
        lines += ["", "Errors by status: " + ", ".join(f"`{c}` x{n}" for c, n in sorted(errors.items()))]
    if report["checks"]:
        lines += ["", "| check | level | observed | limit | result |", "| --- | ---: | ---: | --- | --- |"]
        lines += [
            f"| `{c['name']}` | {c['level']:g} | {_fmt(c['observed'])} | {c['limit']} | "
            f"{'pass' if c['passed'] else '**FAIL**'} |"
            for c in report["checks"]
        ]
    return "\n".join(lines) + "\n"


def _breakdown_lines(report: dict) -> list[str]:
    """Where the time went, for levels whose server reported its timing (deploykit serve does)."""
    levels = [lv for lv in report["levels"] if lv.get("breakdown_ms")]
    if not levels:
        return []
    lines = [
        "",
        "Where the time went (p50 / p99 ms; queue, compute and decode + encode from the server's "
        "Server-Timing, client + network = the rest of the service time):",
        "",
        "| target | mode | level | service time | client + network | queue | compute | decode + encode |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for lv in levels:
        split = lv["breakdown_ms"]
        cells = [lv["service_time_ms"], *(split.get(k, {}) for k in ("client_network", "queue", "compute", "codec"))]
        lines.append(
            f"| {lv.get('target', report['target'])} | {lv['mode']} | {lv['level']:g} | "
            + " | ".join(f"{_fmt(c.get('p50'))} / {_fmt(c.get('p99'))}" for c in cells)
            + " |"
        )
    return lines


def _label(level: dict) -> str:
    return f"{level.get('target', '')} {level['mode']} {level['level']:g}".strip()


def _finished_png(figure, axis, xlabel: str, ylabel: str, title: str) -> str:
    """Label, grid and legend the axis, then the figure as a base64 PNG (and release it)."""
    from matplotlib import pyplot as plt

    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(report: dict) -> dict[str, str]:
    """Base64 PNGs: latency percentile spectrum, throughput vs latency (sweeps), p99 per window."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    images = {}
    figure, axis = plt.subplots(figsize=(7, 4))
    for lv in report["levels"]:
        points = [(p, ms) for p, ms in lv["spectrum_ms"] if p < 100]
        if points:
            axis.plot([1 / (1 - p / 100) for p, _ in points], [ms for _, ms in points], marker="o", label=_label(lv))
    axis.set_xscale("log")
    axis.set_xticks([2, 10, 100, 1000, 10000, 100000], ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    images["latency percentile spectrum"] = _finished_png(
        figure, axis, "percentile", "latency (ms; open loop: from intended send)", "Latency by percentile"
    )

    groups: dict[str, list[dict]] = {}
    for lv in report["levels"]:
        groups.setdefault(lv.get("target", report["target"]), []).append(lv)
    if any(len(g) > 1 for g in groups.values()):
        figure, axis = plt.subplots(figsize=(7, 4))
        for name, group in groups.items():
            xs = [lv["achieved_rps"] for lv in group]
            axis.plot(xs, [lv["latency_ms"]["p50"] for lv in group], marker="o", label=f"{name} p50")
            axis.plot(xs, [lv["latency_ms"]["p99"] for lv in group], marker="s", linestyle="--", label=f"{name} p99")
        images["throughput vs latency"] = _finished_png(
            figure, axis, "achieved throughput (requests/s)", "latency (ms)", "Throughput vs latency across the sweep"
        )

    figure, axis = plt.subplots(figsize=(7, 3))
    for lv in report["levels"]:
        windows = [w for w in lv["windows"] if w["p99_ms"] is not None]
        axis.plot([w["t_s"] for w in windows], [w["p99_ms"] for w in windows], marker=".", label=_label(lv))
    images["p99 per window"] = _finished_png(
        figure, axis, "time since measurement start (s)", "p99 per window (ms)", "Stability: p99 per window"
    )
    return images


def to_html(report: dict) -> str:
    import markdown_it  # rich depends on markdown-it-py: Markdown -> HTML without another dependency

    body = markdown_it.MarkdownIt().enable("table").render(to_markdown(report))
    figures = "".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, data in plots(report).items()
    )
    env = html.escape(json.dumps(report["environment"], indent=1))
    settings = html.escape(json.dumps(report["settings"], indent=1))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>deploykit report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}figure{display:inline-block;"
        "margin:1em}pre{background:#f6f6f6;padding:1em;font-size:12px}</style></head><body>"
        f"{body}{figures}<h3>Settings</h3><pre>{settings}</pre><h3>Environment</h3><pre>{env}</pre></body></html>"
    )


def to_junit(report: dict) -> str:
    suite = ElementTree.Element("testsuite", name=f"deploykit.{report['kind']}")
    cases = []
    for lv in report["levels"]:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname="validity",
            name=f"{lv.get('target', report['target'])} {lv['mode']} {lv['level']:g} valid",
        )
        if not lv["valid"]:
            ElementTree.SubElement(case, "failure", message="; ".join(lv["invalid_reasons"]))
        cases.append(lv["valid"])
    for check in report["checks"]:
        case = ElementTree.SubElement(
            suite, "testcase", classname="thresholds", name=f"{check['name']} @ {check['level']:g}"
        )
        if not check["passed"]:
            ElementTree.SubElement(case, "failure", message=f"observed {check['observed']}, limit {check['limit']}")
        cases.append(check["passed"])
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(cases.count(False)))
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)


WRITERS = {
    ".json": lambda r: json.dumps(r, indent=1) + "\n",
    ".csv": to_csv,
    ".md": to_markdown,
    ".html": to_html,
    ".xml": to_junit,
}


def check_outputs(paths: list[Path]) -> None:
    for path in paths:
        if path.suffix not in WRITERS:
            raise UsageError(f"{path}: unknown report format; expected one of {', '.join(FORMATS)} (.xml = JUnit)")


def write(report: dict, paths: list[Path]) -> None:
    """Write every requested format (atomically: a temporary file renamed into place)."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        staging.write_text(WRITERS[path.suffix](report))
        staging.replace(path)
