"""MLServer serving one ONNX model through ONNX Runtime (run inside MLServer's own venv).

Not deploykit code and it imports none: a custom runtime (an ``MLModel`` subclass) started with
MLServer's own ``MLServer(settings).start(...)``. Settings from the environment: MODEL_NAME,
MODEL_PATH, HTTP_PORT, GRPC_PORT, ORT_THREADS (intra-op threads; 0: ONNX Runtime's default).
Inference runs in the server process (``parallel_workers=0``): MLServer's default of one separate
worker process adds a hop through a pipe to every request, which on small models only costs it time.
Metrics off (their own port and middleware), as the other servers measured run without scraping.
"""

import asyncio
import os

import onnxruntime as ort
from mlserver import MLModel, MLServer
from mlserver.codecs import NumpyCodec
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor

DATATYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32"}


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
        self.session = ort.InferenceSession(self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        results = self.session.run(None, feeds)
        outputs = [
            NumpyCodec.encode_output(meta.name, value)
            for meta, value in zip(self.session.get_outputs(), results, strict=True)
        ]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)


def signature(path: str) -> dict:
    """The graph's inputs and outputs as model-settings metadata: MLServer's ModelMetadata lists only
    what the settings declare, and clients that build requests from metadata need them."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return {
        kind: [
            MetadataTensor(
                name=t.name, datatype=DATATYPES[t.type], shape=[d if isinstance(d, int) else -1 for d in t.shape]
            )
            for t in tensors
        ]
        for kind, tensors in (("inputs", session.get_inputs()), ("outputs", session.get_outputs()))
    }


if __name__ == "__main__":
    settings = Settings(
        host="127.0.0.1",  # loopback, as every server the bench starts
        http_port=int(os.environ["HTTP_PORT"]),
        grpc_port=int(os.environ["GRPC_PORT"]),
        metrics_endpoint=None,
        parallel_workers=0,
        debug=False,
    )
    path = os.environ["MODEL_PATH"]
    model = ModelSettings(
        name=os.environ["MODEL_NAME"],
        implementation=OnnxModel,
        parameters=ModelParameters(uri=path),
        **signature(path),
    )
    asyncio.run(MLServer(settings).start([model]))
