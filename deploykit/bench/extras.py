"""The bench's sections beyond floors, serving and cold start: generator capacity
(:mod:`.generator`), dynamic batching and ``--workers`` (:mod:`.scaling`) and the perf_analyzer
cross-check (:mod:`.crosscheck`). Generator capacity and the cross-check use the reference model (the
bench's first case), batching every model measured at concurrency 32. Each section either adds its
result or says in ``not_run`` why it did not run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deploykit.bench import crosscheck, generator, scaling

#: Section name (``deploykit bench --section``) -> results key and heading in "Not measured".
SECTIONS = {
    "generator": ("generator_capacity", "generator capacity (deploykit loadtest vs native floor)"),
    "scaling": ("scaling", "dynamic batching and --workers ratios"),
    "crosscheck": ("crosscheck", "perf_analyzer cross-check"),
}


def run(
    results: dict,
    *,
    repo: Path,
    cases,
    dataplane: str,
    floor_binary: Path | None,
    floor_reason: str,
    settings,
    measure_point: Callable[..., dict],
) -> None:
    """Measure the selected sections into ``results`` (``settings.sections``: None for all; quick mode runs
    only the ones named explicitly)."""
    wanted = settings.sections if settings.sections is not None else (() if settings.quick else tuple(SECTIONS))
    work = settings.work_dir
    for name, (key, label) in SECTIONS.items():
        if name not in wanted:
            why = "quick mode (deploykit bench --section NAME runs it)" if settings.quick else "not selected"
            results["not_run"][label] = f"Not measured: {why}"
            continue
        if name == "generator":
            if floor_binary is None:
                results["not_run"][label] = f"Not measured: no native floor ({floor_reason})"
                continue
            results[key] = generator.measure(floor_binary, cases[0], work, settings.duration)
        elif name == "scaling":
            results[key] = scaling.measure(repo, cases, dataplane, work, measure_point)
        else:
            results[key] = crosscheck.measure(repo, cases[0], dataplane, work, settings.duration, measure_point)
            skipped = results[key]["clients"]["perf_analyzer"].get("skipped")
            if skipped:
                results["not_run"]["perf_analyzer (Triton's C++ client)"] = f"could not run: {skipped}"


def markdown(results: dict) -> list[str]:
    """The measured sections' tables (nothing for a section that did not run: "Not measured" says why)."""
    lines: list[str] = []
    renderers = {
        "generator_capacity": generator.markdown,
        "scaling": scaling.markdown,
        "crosscheck": crosscheck.markdown,
    }
    for key, render in renderers.items():
        if key in results:
            lines += ["", *render(results[key])]
    return lines
