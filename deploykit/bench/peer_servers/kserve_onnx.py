"""A KServe ModelServer serving one ONNX model through ONNX Runtime (run inside KServe's own venv).

Not deploykit code and it imports none: it is the "real v2 server from PyPI" that the client and load
tester are tested against and that ``deploykit bench`` measures. Settings come from the environment,
because ``import kserve`` parses ``sys.argv`` itself (model_server.py): MODEL_NAME, MODEL_PATH,
HTTP_PORT, GRPC_PORT and ORT_THREADS (intra-op threads; 0: ONNX Runtime's default).
"""

import os

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

DATATYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32"}


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    @staticmethod
    def _types(tensors) -> list[dict]:
        return [
            {"name": t.name, "datatype": DATATYPES[t.type], "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
            for t in tensors
        ]

    def get_input_types(self) -> list[dict]:
        return self._types(self.session.get_inputs())

    def get_output_types(self) -> list[dict]:
        return self._types(self.session.get_outputs())

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        results = self.session.run(None, feeds)
        outputs = []
        for meta, value in zip(self.session.get_outputs(), results, strict=True):
            output = InferOutput(name=meta.name, shape=list(value.shape), datatype=DATATYPES[meta.type])
            output.set_data_from_numpy(value)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)


if __name__ == "__main__":
    model = OnnxModel(os.environ["MODEL_NAME"], os.environ["MODEL_PATH"])
    ModelServer(http_port=int(os.environ["HTTP_PORT"]), grpc_port=int(os.environ["GRPC_PORT"]), workers=1).start(
        [model]
    )
