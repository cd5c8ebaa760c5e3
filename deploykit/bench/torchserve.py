"""The TorchServe peer of ``deploykit bench``: its Java front end and Python worker, over its own gRPC API.

TorchServe has no v2 endpoint: it is measured on its gRPC inference API
(``org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions``), by the same client
(:mod:`deploykit.bench.probe` ``--protocol torchserve``) sending one pre-serialized ``PredictionsRequest``
whose ``input`` map holds each tensor's raw bytes and shape. The request message is built from a
descriptor written here (three fields of TorchServe's ``inference.proto``), so nothing is compiled.
The model is the zoo's ONNX file, archived with a small ONNX Runtime handler
(:mod:`deploykit.bench.peer_servers.torchserve_onnx`). Loopback only; token authorization is switched off
(``disable_token_authorization``: the probe sends no key) and the model-control API stays off (its default).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import Message

from deploykit.bench import servers
from deploykit.ports import free_ports

PACKAGE = "org.pytorch.serve.grpc.inference"
PREDICTIONS = f"/{PACKAGE}.InferenceAPIsService/Predictions"  # probe.PATHS["torchserve"]
HANDLER = Path(__file__).resolve().parent / "peer_servers" / "torchserve_onnx.py"


def java_missing() -> str:
    """Why TorchServe cannot run here ("" when it can): its front end is Java 11+."""
    return (
        "" if shutil.which("java") else "Not measured: TorchServe's front end needs Java 11+ and `java` is not on PATH"
    )


@functools.cache
def request_class() -> type[Message]:
    """TorchServe's ``PredictionsRequest`` message class, from the three fields of its ``inference.proto``
    the bench sends (model_name = 1, model_version = 2, map<string, bytes> input = 3)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fields = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="deploykit_bench_torchserve.proto", package=PACKAGE, syntax="proto3")
    message = file.message_type.add(name="PredictionsRequest")
    message.field.add(name="model_name", number=1, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    message.field.add(name="model_version", number=2, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    entry = message.nested_type.add(name="InputEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=fields.TYPE_BYTES, label=fields.LABEL_OPTIONAL)
    message.field.add(
        name="input", number=3, type=fields.TYPE_MESSAGE, label=fields.LABEL_REPEATED,
        type_name=f".{PACKAGE}.PredictionsRequest.InputEntry",
    )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.PredictionsRequest"))


def predictions_request(model: str, inputs: dict[str, np.ndarray]) -> bytes:
    """A serialized ``PredictionsRequest`` for ``model``: per input NAME, its raw bytes and NAME:shape."""
    request = request_class()(model_name=model)
    for name, value in inputs.items():
        request.input[name] = np.ascontiguousarray(value).tobytes()
        request.input[f"{name}:shape"] = ",".join(str(d) for d in value.shape).encode()
    return request.SerializeToString()


def config(store: Path, ports: dict[str, int]) -> str:
    """TorchServe's config.properties: every listener on loopback, one worker, no token, no batching."""
    return "\n".join([
        f"inference_address=http://127.0.0.1:{ports['http']}",
        f"management_address=http://127.0.0.1:{ports['management']}",
        f"metrics_address=http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_address=127.0.0.1",
        f"grpc_inference_port={ports['grpc']}",
        "grpc_management_address=127.0.0.1",
        f"grpc_management_port={ports['grpc_management']}",
        f"model_store={store}",
        "default_workers_per_model=1",  # one Python process per model, as each other peer runs
        "disable_token_authorization=true",  # the bench's client sends no key; loopback only
        "enable_model_api=false",
        "disable_system_metrics=true",
        "install_py_dep_per_model=false",
        f"initial_worker_port={ports['worker']}",  # names the worker's socket in /tmp: distinct per run
        "",
    ])  # fmt: skip


def archive(python: Path, model: str, onnx_path: Path, store: Path) -> None:
    """``torch-model-archiver``: the ONNX file and the handler as ``store/MODEL.mar``."""
    store.mkdir(parents=True, exist_ok=True)
    command = [
        *_console_script(python, "model_archiver.model_packaging", "generate_model_archive"),
        "--model-name", model, "--version", "1",
        "--serialized-file", str(onnx_path), "--handler", str(HANDLER), "--export-path", str(store), "--force",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _console_script(python: Path, module: str, function: str) -> list[str]:
    """A console script's command through the environment's Python: the scripts' #! lines name the directory
    the environment was built in (peer_envs renames it into place)."""
    return [str(python), "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


@dataclass
class TorchServeProc(servers.Proc):
    """TorchServe's launcher, its Java front end and worker: one process group, stopped together."""

    def stop(self) -> None:
        """SIGTERM to the group this bench started (``start_new_session``), SIGKILL to what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(15)
        deadline = time.monotonic() + 10  # the Java front end outlives its launcher while it shuts down
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start(python: Path, model: str, onnx_path: Path, work: Path, log: Path) -> TorchServeProc:
    """Archive ``onnx_path`` as ``model`` and start TorchServe on free loopback ports (gRPC port: ``.port``)."""
    from deploykit.runtimes.threads import physical_cores

    home = work / f"torchserve-{model}"
    store = home / "store"
    archive(python, model, onnx_path, store)
    names = ("grpc", "grpc_management", "http", "management", "metrics", "worker")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    (home / "config.properties").write_text(config(store, ports))
    env = {
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/"),
        "TMPDIR": str(home),  # its pid file lives there: runs elsewhere on the machine do not collide
        "LOG_LOCATION": str(home / "logs"),
        "METRICS_LOCATION": str(home / "logs"),
        "ORT_THREADS": str(physical_cores()),  # what deploykit's ONNX Runtime tuning picks for one worker
    }
    command = [
        *_console_script(python, "ts.model_server", "start"), "--start", "--foreground", "--ncs",
        "--ts-config", str(home / "config.properties"), "--model-store", str(store), "--models", f"{model}={model}.mar",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return TorchServeProc(process, ports["grpc"])
