"""Fixtures for export tests: real trained zoo runs, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploykit.train import TrainConfig, train

ZOO = ("mlp", "cnn", "transformer")


@pytest.fixture(scope="session")
def zoo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short training run per zoo architecture, both frameworks."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for model in ZOO:
        train(TrainConfig(model=model, epochs=1, out=root / model))
        runs[model] = root / model
    return runs


@pytest.fixture(scope="session")
def exported_zoo(zoo_runs, tmp_path_factory: pytest.TempPathFactory):
    """Every zoo model exported to every format through the Python API."""
    from deploykit.export.crosscheck import torch_vs_keras_twin
    from deploykit.export.run import ExportOptions, export
    from deploykit.export.sources import load_sources
    from deploykit.zoo.spec import spec_from_dict

    repo = tmp_path_factory.mktemp("repo")
    reports = {}
    for model, run in zoo_runs.items():
        sources = load_sources(str(run), ("torch", "tf"))
        torch_source = sources[0]
        cross = torch_vs_keras_twin(torch_source, spec_from_dict(torch_source.origin["architecture"]), (2, 7), 0)
        reports[model] = export(sources, ExportOptions(repo=repo), cross_checks=cross)
    return repo, reports
