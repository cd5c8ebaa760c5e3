"""Export and validation reports: the JSON ``deploykit export --json`` prints and a Markdown summary
(for CI job summaries and the pipeline report)."""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1


def to_dict(report) -> dict[str, Any]:
    """An :class:`deploykit.export.run.ExportReport` as plain JSON-able data."""
    return {
        "ok": report.ok,
        "artifacts": [
            {
                "name": a.name,
                "framework": a.framework,
                "format": a.format,
                "version": a.version,
                "path": str(a.path) if a.path else None,
                "passed": a.passed,
                "error": a.error,
                "export_s": round(a.export_s, 3),
                "validate_s": round(a.validate_s, 3),
                "size_bytes": a.size_bytes,
                "runtime": a.runtime,
                "parity": [r.to_dict() for r in a.parity],
            }
            for a in report.artifacts
        ],
        "cross_checks": [r.to_dict() for r in report.cross_checks],
    }


def _size(n: int | None) -> str:
    return f"{n / 1024:.1f} KiB" if n else "-"


def to_markdown(data: dict[str, Any]) -> str:
    """The artifact table of :func:`to_dict`'s data, with each artifact's worst parity margin."""
    lines = [
        "| artifact | version | status | export s | validate s | size | runtime | max abs error | needed atol |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for a in data["artifacts"]:
        worst = max((r["max_abs"] or 0.0 for r in a["parity"]), default=None)
        needed = max((r["needed_atol"] or 0.0 for r in a["parity"]), default=None)
        status = "pass" if a["passed"] else ("**FAILED** (published)" if a["path"] else "**FAILED**")
        lines.append(
            f"| {a['name']} | {a['version'] or '-'} | {status} | {a['export_s']:.2f} | {a['validate_s']:.2f} | "
            f"{_size(a['size_bytes'])} | {a['runtime'] or '-'} | "
            f"{'-' if worst is None else f'{worst:.2e}'} | {'-' if needed is None else f'{needed:.2e}'} |"
        )
    for a in data["artifacts"]:
        if a["error"]:
            lines.append(f"\n- {a['name']}: {a['error']}")
    return "\n".join(lines) + "\n"
