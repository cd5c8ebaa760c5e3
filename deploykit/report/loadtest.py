"""Load-test reports: JSON (with encoded histograms, re-analysable), CSV, Markdown (CI job summary),
self-contained HTML with plots, and JUnit XML. The format is chosen by the output file's extension."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from deploykit import __version__
from deploykit.errors import UsageError
from deploykit.report import html as html_page
from deploykit.report import plots as plots_
from deploykit.report import write_text

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
    notes: Sequence[str] = (),
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
        "pacing": pacing_method(settings),
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


def pacing_method(settings: dict) -> str | None:
    """How an open-loop run waited for its intended send times, in words (None for a closed loop)."""
    from deploykit.loadtest import pacing

    if settings.get("mode") != "open":
        return None
    return pacing.describe(settings.get("pacing") or "sleep")  # reports from before --pacing used sleep


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
    if report.get("pacing"):
        lines += [f"Open-loop pacing: {report['pacing']}."]
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


def plots(report: dict) -> dict[str, str | None]:
    """Base64 PNGs: latency percentile spectrum, throughput vs latency (sweeps), p99 per window."""
    groups: dict[str, list[dict]] = {}
    for lv in report["levels"]:
        groups.setdefault(lv.get("target", report["target"]), []).append(lv)
    return {
        "latency percentile spectrum": plots_.latency_spectrum(
            {_label(lv): lv["spectrum_ms"] for lv in report["levels"]}
        ),
        "throughput vs latency": plots_.throughput_latency(groups, "Throughput vs latency across the sweep")
        if any(len(g) > 1 for g in groups.values())
        else None,
        "p99 per window": plots_.windows_p99([(_label(lv), lv["windows"]) for lv in report["levels"]]),
    }


def to_html(report: dict) -> str:
    return html_page.page(
        "deploykit report",
        to_markdown(report),
        plots(report),
        {"Settings": report["settings"], "Environment": report["environment"]},
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
        write_text(path, WRITERS[path.suffix](report))
