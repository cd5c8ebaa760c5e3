"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploykit import ports

# Quieter TensorFlow in test logs; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: TensorFlow Serving's own reference models and golden files (read-only; vendored from the
#: project's shared test data with their Apache-2.0 LICENSE, so a clean clone is self-contained).
TFSERVING_TESTDATA = Path(__file__).resolve().parent / "data" / "tfserving"


ZOO = ("mlp", "cnn", "transformer")

#: Every gRPC server test runs on both data planes (``dataplane`` fixture), so they cannot drift apart.
DATAPLANES = ("python", "native")


@pytest.fixture(scope="module", params=DATAPLANES)
def dataplane(request) -> str:
    """``python`` or ``native`` (:func:`require_native`)."""
    if request.param == "native":
        require_native()
    return request.param


def require_native() -> None:
    """Skip the test when the native data plane is not built, except where the build is required
    (CI sets DEPLOYKIT_REQUIRE_NATIVE=1: a missing build fails there)."""
    from deploykit import native

    if not native.available():
        if os.environ.get("DEPLOYKIT_REQUIRE_NATIVE") == "1":
            pytest.fail(native.unavailable_reason())
        pytest.skip(native.unavailable_reason())


#: The (protocol, data plane) pairs a client-driven server test runs on: gRPC on both data planes,
#: REST once (it does not go through the gRPC data plane, so a second run would test nothing new).
PROTOCOL_DATAPLANES = [("grpc", "python"), ("grpc", "native"), ("rest", "python")]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that ask for ``protocol`` and ``dataplane`` run on :data:`PROTOCOL_DATAPLANES` only
    (instead of the full product, whose REST-on-native half would be skipped). The mark takes
    precedence over the ``dataplane`` fixture's own params; it is read by pytest's parametrize hook."""
    if {"protocol", "dataplane"} <= set(metafunc.fixturenames):
        metafunc.definition.add_marker(
            pytest.mark.parametrize(
                ("protocol", "dataplane"),
                PROTOCOL_DATAPLANES,
                indirect=["dataplane"],
                scope="module",
                ids=[f"{p}-{d}" for p, d in PROTOCOL_DATAPLANES],
            )
        )


def free_port() -> int:
    """A loopback port that was free a moment ago (for subprocesses that cannot bind port 0); two
    for one server: :func:`deploykit.ports.free_ports`."""
    return ports.free_port()


@pytest.fixture(scope="session")
def zoo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short training run per zoo architecture, both frameworks."""
    from deploykit.train import TrainConfig, train

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
