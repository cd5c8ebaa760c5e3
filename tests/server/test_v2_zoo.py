"""Triton's own client (``tritonclient``: gRPC, HTTP with binary data on and off) against deploykit
serve on every zoo artifact it serves (ONNX from both frameworks, TorchScript, ``.pt2``, SavedModel):
outputs equal to the version's golden outputs, model config consistent with the metadata."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.export.golden import load_golden
from deploykit.repository import GOLDEN
from deploykit.server import ServerConfig, ServerThread

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.http as tritonhttp  # noqa: E402

ARTIFACTS = [
    f"{m}-{s}"
    for m in ("mlp", "cnn", "transformer")
    for s in ("torch-torchscript", "torch-pt2", "torch-onnx", "tf-savedmodel", "tf-onnx")
]
CLIENTS = ["grpc", "http-binary", "http-json"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(exported_zoo):
    repo, _ = exported_zoo
    with ServerThread(ServerConfig(model_path=repo, grpc_port=0, rest_port=0, file_system_poll_seconds=0)) as running:
        yield running


@pytest.fixture(scope="module", params=CLIENTS)
def triton(request, server):
    if request.param == "grpc":
        client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{server.server.grpc_port}")
    else:
        client = tritonhttp.InferenceServerClient(f"127.0.0.1:{server.server.rest_port}")
    yield request.param, client
    client.close()


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_tritonclient_gets_the_golden_outputs(exported_zoo, triton, artifact: str) -> None:
    kind, client = triton
    module = tritonclient_grpc if kind == "grpc" else tritonhttp
    binary = kind != "http-json"
    repo, _ = exported_zoo
    assert client.is_model_ready(artifact)
    metadata = client.get_model_metadata(artifact)
    names = (
        [t["name"] for t in metadata["outputs"]] if isinstance(metadata, dict) else [t.name for t in metadata.outputs]
    )
    for _, (inputs, expected) in load_golden(repo / artifact / "1" / GOLDEN).items():
        tensors = []
        for name, array in inputs.items():
            tensor = module.InferInput(name, list(array.shape), module.np_to_triton_dtype(array.dtype))
            if kind == "grpc":
                tensor.set_data_from_numpy(array)
            else:
                tensor.set_data_from_numpy(array, binary_data=binary)
            tensors.append(tensor)
        outputs = (
            [module.InferRequestedOutput(n) for n in names]
            if kind == "grpc"
            else [module.InferRequestedOutput(n, binary_data=binary) for n in names]
        )
        result = client.infer(artifact, tensors, outputs=outputs)
        for name, want in expected.items():
            got = result.as_numpy(name)
            assert got.shape == want.shape and got.dtype == want.dtype, name
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("artifact", ["mlp-torch-onnx", "mlp-torch-torchscript", "mlp-tf-savedmodel"])
def test_config_and_statistics_through_tritonclient(server, artifact: str) -> None:
    client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{server.server.grpc_port}")
    config = client.get_model_config(artifact).config
    metadata = client.get_model_metadata(artifact)
    assert [i.name for i in config.input] == [i.name for i in metadata.inputs]
    assert [o.name for o in config.output] == [o.name for o in metadata.outputs]
    assert (
        config.platform
        == {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch", "savedmodel": "tensorflow_savedmodel"}[
            artifact.rsplit("-", 1)[1]
        ]
    )
    stats = client.get_inference_statistics(artifact).model_stats
    assert stats and stats[0].name == artifact
    client.close()
