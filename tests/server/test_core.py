"""The inference core without any transport: :class:`InferenceService` and its
:class:`VersionRegistry` called directly, on real ONNX Runtime models built here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import add_version

from deploykit.errors import InvalidInput, ModelNotFound, SignatureNotFound
from deploykit.server.core import InferenceService, ModelRef, Timing
from deploykit.server.registry import VersionRegistry
from deploykit.server.version_loader import LoadedVersion, load_version

X = np.ones((2, 4), np.float32)


def _load(base: Path, version: int) -> LoadedVersion:
    add_version(base, version)
    loaded = load_version("affine", version, base / str(version))
    assert loaded.available, loaded.error
    return loaded


@pytest.fixture
def service(tmp_path):
    """Versions 1 and 2 of ``affine`` (y = x + version), label ``stable`` -> 1."""
    service = InferenceService([_load(tmp_path, 1), _load(tmp_path, 2)], threads=1)
    service.registry.set_labels("affine", {"stable": 1})
    yield service
    service.close()


def predict(service: InferenceService, ref: ModelRef, inputs=None, **kwargs):
    return asyncio.run(service.predict(ref, {"x": X} if inputs is None else inputs, **kwargs))


def test_latest_specific_and_labelled_versions(service) -> None:
    for ref, version in ((ModelRef("affine"), 2), (ModelRef("affine", 1), 1), (ModelRef("affine", label="stable"), 1)):
        loaded, signature_name, outputs = predict(service, ref)
        assert (loaded.version, signature_name) == (version, "serving_default")
        np.testing.assert_allclose(outputs["y"], X + version)


def test_timing_is_filled(service) -> None:
    timing = Timing()
    predict(service, ModelRef("affine"), timing=timing)
    assert timing.compute_s > 0 and timing.queue_s >= 0


def test_request_errors_are_tf_servings(service) -> None:
    with pytest.raises(ModelNotFound, match=r"Servable not found for request: Specific\(affine, 7\)"):
        predict(service, ModelRef("affine", 7))
    with pytest.raises(ModelNotFound, match=r"Servable not found for request: Latest\(other\)"):
        predict(service, ModelRef("other"))
    with pytest.raises(InvalidInput, match="Unrecognized servable version label: canary"):
        predict(service, ModelRef("affine", label="canary"))
    with pytest.raises(SignatureNotFound, match='Serving signature key "nope" not found.'):
        predict(service, ModelRef("affine", signature="nope"))
    with pytest.raises(InvalidInput, match="input tensor 'x' has shape \\[2, 3\\]; the signature expects \\[-1, 4\\]"):
        predict(service, ModelRef("affine"), {"x": np.ones((2, 3), np.float32)})
    with pytest.raises(InvalidInput, match="Missing but required: {x}"):
        predict(service, ModelRef("affine"), {"z": X})
    with pytest.raises(InvalidInput, match="output tensor alias not found in signature: nope"):
        predict(service, ModelRef("affine"), output_filter=["nope"])


def test_status_and_readiness_follow_the_registry(service) -> None:
    assert [v.version for v in service.status("affine", None)] == [1, 2]
    assert service.ready
    latest = service.registry.get("affine", 2)
    latest.state = "UNLOADING"  # retiring: no longer resolved, still in the status
    assert predict(service, ModelRef("affine"))[0].version == 1
    assert [v.state for v in service.status("affine", None)] == ["AVAILABLE", "UNLOADING"]
    service.registry.add_model("empty")  # configured, no version yet: known but not ready
    assert not service.ready
    with pytest.raises(ModelNotFound, match="Could not find any versions of model empty"):
        service.status("empty", None)
    service.registry.remove_model("empty")
    assert service.ready


def test_release_version_waits_for_nothing_when_idle(service) -> None:
    assert asyncio.run(service.release_version(service.registry.get("affine", 1), timeout=5))


def test_a_held_version_is_served_although_it_retires_meanwhile(service) -> None:
    """REST resolves a version before decoding (it needs the signature): if that version starts
    retiring meanwhile, the request is still served by it, and the retirement waits for it."""

    async def scenario() -> tuple[bool, bool, np.ndarray]:
        loaded = service.resolve(ModelRef("affine", 1))
        with service.hold(loaded):
            loaded.state = "UNLOADING"  # as the manager retires it: resolve() no longer hands it out
            release = asyncio.create_task(service.release_version(loaded, timeout=30))
            await asyncio.sleep(0.05)  # the release runs, and must be waiting for the held request
            waited = not release.done()
            _, _, outputs = await service.predict_on(loaded, "", {"x": X})
        return waited, await release, outputs["y"]

    waited, released, y = asyncio.run(scenario())
    assert waited and released
    np.testing.assert_allclose(y, X + 1)
    with pytest.raises(ModelNotFound):  # a new request no longer resolves to it
        predict(service, ModelRef("affine", 1))


def test_registry_changes_only_through_its_methods(tmp_path) -> None:
    registry = VersionRegistry()
    loaded = LoadedVersion("m", 3, tmp_path, state="LOADING")
    registry.put(loaded)
    assert registry.model_names() == ["m"] and registry.get("m", 3) is loaded
    snapshot = registry.versions("m")
    snapshot.clear()  # a snapshot, not the table
    assert registry.get("m", 3) is loaded
    with pytest.raises(ModelNotFound):  # LOADING is never resolved
        registry.resolve(ModelRef("m"))
    registry.set_labels("m", {"canary": 3})
    assert registry.labels("m") == {"canary": 3}
    registry.forget("m", 3)
    assert registry.versions("m") == {} and list(registry) == []
    registry.remove_model("m")
    assert registry.model_names() == [] and registry.labels("m") == {}
