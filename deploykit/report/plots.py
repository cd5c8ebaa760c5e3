"""The reports' plots, drawn with matplotlib (Agg) and returned as base64 PNGs so an HTML report is
one self-contained file. Each function takes plain report dicts and returns None when it has
nothing to draw."""

from __future__ import annotations

import base64
import io

#: The percentile axis of a spectrum plot: x = 1 / (1 - p), labelled as percentiles.
SPECTRUM_TICKS = ([2, 10, 100, 1000, 10000, 100000], ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])


def _figure(size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.subplots(figsize=size)


def _png(figure, axis, xlabel: str, ylabel: str, title: str, legend: bool = True) -> str:
    """Label, grid and legend the axis, then the figure as a base64 PNG (and release it)."""
    from matplotlib import pyplot as plt

    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    if legend and axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def latency_spectrum(series: dict[str, list[tuple[float, float]]], title: str = "Latency by percentile") -> str | None:
    """Latency percentile spectrum: ``{label: [(percentile, ms), ...]}``."""
    drawable = {k: [(p, ms) for p, ms in v if p < 100] for k, v in series.items()}
    drawable = {k: v for k, v in drawable.items() if v}
    if not drawable:
        return None
    figure, axis = _figure((7, 4))
    for label, points in drawable.items():
        axis.plot([1 / (1 - p / 100) for p, _ in points], [ms for _, ms in points], marker="o", label=label)
    axis.set_xscale("log")
    axis.set_xticks(*SPECTRUM_TICKS)
    return _png(figure, axis, "percentile", "latency (ms; open loop: from intended send)", title)


def throughput_latency(groups: dict[str, list[dict]], title: str = "Throughput vs latency") -> str | None:
    """p50 and p99 against achieved throughput: ``{label: [level dict, ...]}`` (load-test levels)."""
    groups = {k: v for k, v in groups.items() if v and any(lv["latency_ms"]["p50"] is not None for lv in v)}
    if not groups:
        return None
    figure, axis = _figure((7, 4))
    for name, group in groups.items():
        group = sorted(group, key=lambda lv: lv["achieved_rps"])
        xs = [lv["achieved_rps"] for lv in group]
        axis.plot(xs, [lv["latency_ms"]["p50"] for lv in group], marker="o", label=f"{name} p50")
        axis.plot(xs, [lv["latency_ms"]["p99"] for lv in group], marker="s", linestyle="--", label=f"{name} p99")
    return _png(figure, axis, "achieved throughput (requests/s)", "latency (ms)", title)


def windows_p99(levels: list[tuple[str, list[dict]]], title: str = "Stability: p99 per window") -> str | None:
    """p99 per measurement window: ``[(label, windows), ...]``."""
    figure, axis = _figure((7, 3))
    drawn = False
    for label, windows in levels:
        points = [w for w in windows if w.get("p99_ms") is not None]
        if points:
            drawn = True
            axis.plot([w["t_s"] for w in points], [w["p99_ms"] for w in points], marker=".", label=label)
    if not drawn:
        from matplotlib import pyplot as plt

        plt.close(figure)
        return None
    return _png(figure, axis, "time since measurement start (s)", "p99 per window (ms)", title)


def bars_with_ci(rows: list[tuple[str, float | None, float | None]], ylabel: str, title: str) -> str | None:
    """One bar per row ``(label, value, 95% CI half-width)``, the interval drawn as an error bar."""
    rows = [(label, value, ci) for label, value, ci in rows if value is not None]
    if not rows:
        return None
    figure, axis = _figure((max(5.0, 0.9 * len(rows) + 2), 4))
    positions = range(len(rows))
    axis.bar(
        positions,
        [v for _, v, _ in rows],
        yerr=[ci or 0.0 for _, _, ci in rows],
        capsize=4,
        color="#4c72b0",
        ecolor="#222",
    )
    axis.set_xticks(list(positions), [label for label, _, _ in rows], rotation=30, ha="right", fontsize=8)
    return _png(figure, axis, "", ylabel, title + " (error bars: 95% CI)", legend=False)
