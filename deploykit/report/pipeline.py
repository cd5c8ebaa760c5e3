"""The pipeline's report: ``report.json`` (schema-versioned), ``report.md`` (fits a CI job summary),
``report.html`` (self-contained, with plots) and ``junit.xml``, written to the run's report directory
even when a step failed (then the sections of the steps that ran)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

from deploykit.report import export as export_report
from deploykit.report import html as html_page
from deploykit.report import plots, write_text

FILES = ("report.json", "report.md", "report.html", "junit.xml")


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(value, half) -> str:
    return "-" if value is None else f"{value:.3f} ± {_f(half)}" if half is not None else f"{value:.3f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(_f(c) for c in row) + " |" for row in rows),
        "",
    ]


def _model_markdown(m: dict) -> list[str]:
    out = [f"## Model `{m['name']}` ({m['architecture']})", ""]
    if "verdict" in m:
        out += ["**Verdict.** " + m["verdict"]["text"], ""]
    if "train" in m:
        out += ["### Accuracy per framework", ""]
        rows = [
            [fw, r["test_accuracy"], r["test_loss"], r["epochs"], r["wall_time_s"], r["parameters"]]
            for fw, r in m["train"]["frameworks"].items()
        ]
        out += _table(["framework", "test accuracy", "test loss", "epochs", "train s", "parameters"], rows)
        if m["train"].get("prediction_agreement") is not None:
            out += [
                f"The twins predict the same class on {m['train']['prediction_agreement']:.1%} of the test set.",
                "",
            ]
    if "export" in m:
        out += ["### Artifacts (export time, size, parity with the source)", "", export_report.to_markdown(m["export"])]
    if m.get("serving_parity"):
        out += ["### Serving parity (golden inputs over the wire)", ""]
        rows = [
            [
                r["path"],
                r["batch_size"],
                r["output"],
                "pass" if r["passed"] else "**FAIL**",
                r.get("max_abs"),
                r.get("atol"),
                r.get("problem") or "",
            ]
            for r in m["serving_parity"]
        ]
        out += _table(["path", "batch", "output", "result", "max abs error", "atol", "problem"], rows)
    if m.get("servers"):
        out += ["### Servers", ""]
        rows = [
            [
                s["name"],
                s["engine"] or "-",
                ", ".join(s["models"]),
                s["cold_start_s"],
                s["rss_mb"].get("ready"),
                s["rss_mb"].get("after_load"),
            ]
            for s in m["servers"]
        ]
        out += _table(
            ["server", "engine (as measured)", "models", "cold start s", "RSS MiB ready", "RSS MiB after load"], rows
        )
    out += [f"- {note}" for note in m.get("serving_notes", [])] + ([""] if m.get("serving_notes") else [])
    if m.get("paths"):
        out += ["### Latency and throughput per deploy path (95% CI over measurement windows)", ""]
        rows = []
        for p in m["paths"]:
            b, u = p["batch1"] or {}, p["under_load"] or {}
            rows.append(
                [
                    p["path"],
                    _ci(b.get("p50_window_mean_ms"), b.get("p50_ci95_ms")),
                    b.get("p99_ms"),
                    _ci(b.get("rps_window_mean"), b.get("rps_ci95")),
                    _ci(u.get("p50_window_mean_ms"), u.get("p50_ci95_ms")),
                    u.get("p99_ms"),
                    _ci(u.get("rps_window_mean"), u.get("rps_ci95")),
                    "yes" if b.get("valid") and u.get("valid") else "NO",
                ]
            )
        concurrency = m["load"]["under_load"]["levels"][0]["level"] if m["load"].get("under_load") else "?"
        out += _table(
            [
                "path",
                "c=1 p50 ms",
                "c=1 p99 ms",
                "c=1 req/s",
                f"c={concurrency:g} p50 ms",
                f"c={concurrency:g} p99 ms",
                f"c={concurrency:g} req/s",
                "valid",
            ],
            rows,
        )
        out += ["### Where the time went (c=1, p50 ms; from the server's Server-Timing)", ""]
        parts = ("client_network", "queue", "compute", "codec")
        rows = [
            [p["path"], *((p["batch1"] or {}).get("breakdown_ms", {}).get(k, {}).get("p50") for k in parts)]
            for p in m["paths"]
        ]
        out += _table(["path", "client + network", "queue", "compute", "decode + encode"], rows)
        out += ["A server that reports no timing (TF Serving) shows '-'.", ""]
    if m.get("frameworks"):
        out += ['### "TensorFlow is easier to deploy, PyTorch easier to learn", measured', ""]
        rows = []
        for fw, c in m["frameworks"].items():
            for fmt in c["formats_attempted"]:
                rows.append(
                    [
                        fw,
                        fmt,
                        "yes" if fmt in c["first_attempt_ok"] else "**no**",
                        c["converter_warnings"][fmt],
                        c["export_s"][fmt],
                        c["serving_environment_mb"][fmt],
                        (c["cold_start"].get(fmt) or {}).get("cold_start_s"),
                        ", ".join(c["engines_accepting"][fmt]),
                    ]
                )
        out += _table(
            [
                "framework",
                "format",
                "exported + validated first time",
                "converter warnings",
                "export s",
                "serving env MiB",
                "cold start s",
                "engines accepting",
            ],
            rows,
        )
    return out


def to_markdown(report: dict) -> str:
    status = {"passed": "PASSED", "failed": "FAILED", "interrupted": "INTERRUPTED"}.get(report["status"], "RUNNING")
    lines = [f"# deploykit pipeline `{report['run']}`: {status}", ""]
    if report.get("failed_step"):
        f = report["failed_step"]
        lines += [
            f"**Failed step:** `{f['step']}`{' (' + f['model'] + ')' if f.get('model') else ''}: {f['error']}",
            "",
        ]
    lines += _table(
        ["step", "model", "status", "seconds", "error"],
        [[s["step"], s["model"] or "-", s["status"], s["seconds"], s["error"] or ""] for s in report["steps"]],
    )
    for model in report["models"]:
        lines += _model_markdown(model)
    return "\n".join(lines) + "\n"


def figures(report: dict) -> dict[str, str | None]:
    """Per model: latency spectra (c=1 and under load), throughput vs latency, bars with 95% CI."""
    found: dict[str, str | None] = {}
    for m in report["models"]:
        load = m.get("load") or {}
        name = {p["target"]: p["path"] for p in m.get("paths", [])}  # legends: "mlp-tf-onnx grpc", not URLs
        for key, label in (("batch1", "concurrency 1"), ("under_load", "under load")):
            if load.get(key):
                found[f"{m['name']}: latency percentile spectrum, {label}"] = plots.latency_spectrum(
                    {name.get(lv["target"], lv["target"]): lv["spectrum_ms"] for lv in load[key]["levels"]},
                    f"{m['name']}: latency by percentile ({label})",
                )
        if load.get("batch1") and load.get("under_load"):
            groups: dict[str, list[dict]] = {}
            for key in ("batch1", "under_load"):
                for lv in load[key]["levels"]:
                    groups.setdefault(name.get(lv["target"], lv["target"]), []).append(lv)
            found[f"{m['name']}: throughput vs latency"] = plots.throughput_latency(
                groups, f"{m['name']}: throughput vs latency (c=1 and under load)"
            )
        for key, label in (("batch1", "c=1"), ("under_load", "under load")):
            rows = [
                (p["path"], (p[key] or {}).get("p50_window_mean_ms"), (p[key] or {}).get("p50_ci95_ms"))
                for p in m.get("paths", [])
            ]
            found[f"{m['name']}: p50 per path, {label}"] = plots.bars_with_ci(
                rows, "p50 latency (ms)", f"{m['name']}: p50 per path, {label}"
            )
        rows = [
            (p["path"], (p["under_load"] or {}).get("rps_window_mean"), (p["under_load"] or {}).get("rps_ci95"))
            for p in m.get("paths", [])
        ]
        found[f"{m['name']}: throughput per path under load"] = plots.bars_with_ci(
            rows, "requests/s", f"{m['name']}: throughput per path under load"
        )
    return found


def to_html(report: dict) -> str:
    return html_page.page(
        f"deploykit pipeline {report['run']}",
        to_markdown(report),
        figures(report),
        {"Configuration": report["config"], "Environment": report.get("environment", {})},
    )


def to_junit(report: dict) -> str:
    """One test case per step and per serving-parity path (CI test-result views)."""
    suite = ElementTree.Element("testsuite", name="deploykit.pipeline")
    cases = 0
    failures = 0
    for s in report["steps"]:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"pipeline.{s['model'] or 'run'}", name=s["step"], time=str(s["seconds"] or 0)
        )
        cases += 1
        if s["status"] != "ok":
            failures += 1
            ElementTree.SubElement(case, "failure", message=s["error"] or s["status"])
    for m in report["models"]:
        paths: dict[str, list[dict]] = {}
        for r in m.get("serving_parity", []):
            paths.setdefault(r["path"], []).append(r)
        for path, rows in paths.items():
            case = ElementTree.SubElement(suite, "testcase", classname=f"serving_parity.{m['name']}", name=path)
            cases += 1
            bad = [r for r in rows if not r["passed"]]
            if bad:
                failures += 1
                ElementTree.SubElement(
                    case,
                    "failure",
                    message="; ".join(
                        f"{r['output']} b{r['batch_size']}: {r.get('problem') or r.get('max_abs')}" for r in bad
                    ),
                )
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)


def write(report: dict, directory: Path) -> list[Path]:
    """Write every file of :data:`FILES` into ``directory`` (each atomically)."""
    writers = {
        "report.json": lambda r: json.dumps(r, indent=1, default=str) + "\n",
        "report.md": to_markdown,
        "report.html": to_html,
        "junit.xml": to_junit,
    }
    written = []
    for name in FILES:
        write_text(directory / name, writers[name](report))
        written.append(directory / name)
    return written
