"""Export + validation wall time and artifact size per format, for every zoo model.

Run:  .venv/bin/python benchmarks/export_zoo.py [--epochs 3] [--repeats 3]

Each model is trained briefly (the weights' values do not change conversion cost), then exported to
every format ``--repeats`` times into a fresh repository; the table reports the median export and
validation times and, as a ratio, each format's export time relative to TorchScript's for the
same model in the same run (this machine is noisy; ratios travel better than seconds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from deploykit.export.run import ExportOptions, export
from deploykit.export.sources import load_sources
from deploykit.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for model in ("mlp", "cnn", "transformer"):
            train(TrainConfig(model=model, epochs=args.epochs, out=root / "runs" / model))
            sources = load_sources(str(root / "runs" / model), ("torch", "tf"))
            timings: dict[str, list[tuple[float, float]]] = {}
            sizes: dict[str, int] = {}
            for repeat in range(args.repeats):
                report = export(sources, ExportOptions(repo=root / f"repo{repeat}"))
                assert report.ok, [(a.name, a.error) for a in report.artifacts]
                for a in report.artifacts:
                    timings.setdefault(a.name, []).append((a.export_s, a.validate_s))
                    sizes[a.name] = a.size_bytes
            base = statistics.median(t[0] for t in timings[f"{model}-torch-torchscript"])
            for name, samples in timings.items():
                export_s = statistics.median(t[0] for t in samples)
                validate_s = statistics.median(t[1] for t in samples)
                rows.append((name, export_s, validate_s, sizes[name], export_s / base))

    print(f"| artifact | export (s, median of {args.repeats}) | validate (s) | size (KiB) | export / torchscript |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, export_s, validate_s, size, ratio in rows:
        print(f"| {name} | {export_s:.3f} | {validate_s:.3f} | {size / 1024:.1f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
