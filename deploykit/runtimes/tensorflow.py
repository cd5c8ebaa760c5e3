"""TensorFlow SavedModel adapter: every signature of a SavedModel directory, run as TF Serving runs
them (imports tensorflow).

TF Serving feeds a signature's tensors straight to C++ ``Session::Run``, which checks dtypes but not
static shapes. On TF1 graphs that makes shapes advisory: a rank-1 ``x`` fed where ``[-1,1]`` is
declared computes, and the output keeps the fed shape. TF1 graphs (no object graph) are therefore
loaded into a graph-mode ``Session`` and run through session callables (Python's ``Session.run``
would refuse such feeds: "Cannot feed value of shape ..."). TF2 exports keep ``tf.saved_model.load``
and their signature functions, whose input signatures fix the shapes.
:attr:`~deploykit.runtimes.base.Runtime.advisory_shapes` tells the server which of the two it serves.

The SignatureDefs themselves are read from ``saved_model.pb`` and kept serialized
(:attr:`SavedModelRuntime.signature_defs`), so the server answers GetModelMetadata with exactly what
the SavedModel declares.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from deploykit.quiet import native_output_captured  # noqa: E402

with native_output_captured():  # TensorFlow's import-time oneDNN/CUDA notices
    import tensorflow as tf

import numpy as np  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2  # noqa: E402

from deploykit.errors import (  # noqa: E402
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    ModelNotReady,
    NotFound,
    ResourceExhausted,
    ServingError,
    Unimplemented,
    UsageError,
)
from deploykit.runtimes.base import DEFAULT_SIGNATURE, Runtime  # noqa: E402
from deploykit.tensors import Signature, Tensors, TensorSpec, dtype_name  # noqa: E402

#: TF Serving's default ``--saved_model_tags``.
SERVE_TAG = "serve"
#: Not a computation: TF2 SavedModels list their initializer among the signatures. It is reported
#: in metadata (TF Serving does) but cannot be called.
INIT_OP_SIGNATURE = "__saved_model_init_op"

#: TensorFlow's status code -> the deploykit error with the same gRPC code: TF Serving passes a
#: failed run's status through unchanged. A NOT_FOUND from an op (a missing file, say) is not "servable
#: not found", hence the generic NotFound. Codes missing here stay exceptions, which the server answers
#: as INTERNAL (with the traceback in its log).
_ERRORS_BY_TF_CODE: dict[int, type[ServingError]] = {
    tf.errors.INVALID_ARGUMENT: InvalidInput,
    tf.errors.NOT_FOUND: NotFound,
    tf.errors.FAILED_PRECONDITION: FailedPrecondition,
    tf.errors.RESOURCE_EXHAUSTED: ResourceExhausted,
    tf.errors.DEADLINE_EXCEEDED: DeadlineExceeded,
    tf.errors.UNAVAILABLE: ModelNotReady,
    tf.errors.UNIMPLEMENTED: Unimplemented,
}
#: What Python's eager/function runtime puts before the C++ status message (TF Serving sends that alone).
_PYTHON_PREAMBLE = re.compile(
    r"\AGraph execution error:\s*Detected at node .*? defined at \(most recent call last\):\n"
    r"<stack traces unavailable>\n",
    re.DOTALL,
)


def serving_error(error: tf.errors.OpError) -> ServingError | None:
    """The deploykit error that answers a failed run with TensorFlow's code and message, or None
    when the code has no counterpart (the caller lets the error through as an internal failure)."""
    cls = _ERRORS_BY_TF_CODE.get(error.error_code)
    if cls is None:
        return None
    return cls(_PYTHON_PREAMBLE.sub("", error.message).strip())


def _spec(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    dtype = tf.dtypes.as_dtype(info.dtype).base_dtype  # reference dtypes (TF1 variables) read as values
    name = "string" if dtype == tf.string else dtype_name(dtype.as_numpy_dtype)
    if info.tensor_shape.unknown_rank:
        return TensorSpec(alias, name, None)
    return TensorSpec(alias, name, tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim))


def _signature(definition: meta_graph_pb2.SignatureDef) -> Signature:
    return Signature(
        tuple(_spec(alias, info) for alias, info in sorted(definition.inputs.items())),
        tuple(_spec(alias, info) for alias, info in sorted(definition.outputs.items())),
    )


def read_meta_graph(path: Path, tags: tuple[str, ...] = (SERVE_TAG,)) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef of ``path`` whose tag set is ``tags`` (the one TensorFlow's loader picks)."""
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    saved_model = saved_model_pb2.SavedModel()
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    elif text.is_file():
        text_format.Parse(text.read_text(), saved_model)
    else:
        raise UsageError(f"{path}: no saved_model.pb or saved_model.pbtxt")
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise UsageError(f"SavedModel {path} has no MetaGraph tagged {sorted(tags)}; it has: {found}")


class _SessionSignatures:
    """TF1 graphs: one graph-mode session; each signature runs as a session callable."""

    def __init__(self, path: Path, definitions: dict[str, meta_graph_pb2.SignatureDef]) -> None:
        self._definitions = definitions
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        try:
            with native_output_captured(), self._graph.as_default():  # CUDA probing, deprecation notices
                tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], str(path))
        except BaseException:
            self._session.close()
            raise
        self._callables: dict[str, object] = {}
        self._lock = threading.Lock()

    def run(self, name: str, signature: Signature, inputs: Tensors) -> list:
        return self._callable(name, signature)(*(np.asarray(inputs[spec.name]) for spec in signature.inputs))

    def _callable(self, name: str, signature: Signature):
        """Feeds in input order, fetches in output order.

        ``Session._make_callable_from_options`` is the Python door to C++ ``Session::MakeCallable``;
        the public ``make_callable(fetches, feed_list)`` goes through ``Session.run``, whose
        Python-side static shape check is exactly what TF Serving does not do.
        """
        with self._lock:
            if name not in self._callables:
                definition = self._definitions[name]
                options = config_pb2.CallableOptions(
                    feed=[definition.inputs[spec.name].name for spec in signature.inputs],
                    fetch=[definition.outputs[spec.name].name for spec in signature.outputs],
                )
                self._callables[name] = self._session._make_callable_from_options(options)
            return self._callables[name]

    def close(self) -> None:
        with self._lock:
            self._callables.clear()
        self._session.close()


class _FunctionSignatures:
    """TF2 exports: the signature functions of ``tf.saved_model.load`` (shapes enforced by them)."""

    def __init__(self, path: Path) -> None:
        with native_output_captured():  # CUDA probing notices on first use of the runtime
            self._loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])

    def run(self, name: str, signature: Signature, inputs: Tensors) -> list:
        result = self._loaded.signatures[name](
            **{spec.name: tf.constant(inputs[spec.name]) for spec in signature.inputs}
        )
        return [result[spec.name].numpy() for spec in signature.outputs]

    def close(self) -> None:
        self._loaded = None


class SavedModelRuntime(Runtime):
    """Loads ``path`` (a directory with ``saved_model.pb``) and runs any of its signatures."""

    def __init__(self, path: Path, signature: Signature | None = None) -> None:
        self.path = Path(path)
        from deploykit.runtimes.tf_tuning import configure_threads

        self.threads = configure_threads()  # before the load initialises TensorFlow's runtime
        meta_graph = read_meta_graph(self.path)
        definitions = dict(meta_graph.signature_def)
        #: Signature name -> serialized ``tensorflow.SignatureDef``, exactly as saved.
        self.signature_defs: Mapping[str, bytes] = {name: d.SerializeToString() for name, d in definitions.items()}
        # The signatures a request can run (the TF2 initializer is not one).
        self._by_name: dict[str, Signature] = {
            name: _signature(d) for name, d in definitions.items() if name != INIT_OP_SIGNATURE
        }
        #: True for TF1 graphs (no object graph): TF Serving feeds them without any shape check.
        self.advisory_shapes = not meta_graph.HasField("object_graph_def")
        self._runner = (
            _SessionSignatures(self.path, definitions) if self.advisory_shapes else _FunctionSignatures(self.path)
        )

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._by_name

    def describe(self) -> dict[str, Any]:
        """Engine, version, graph kind, thread settings, and whether the graph asks for XLA."""
        pb = self.path / "saved_model.pb"
        return {
            "engine": "tensorflow",
            "version": tf.__version__,
            "graph": "tf1-session" if self.advisory_shapes else "tf2-function",
            "threads": self.threads,
            "xla_jit_compile": pb.is_file() and b"_XlaMustCompile" in pb.read_bytes(),
        }

    def predict(self, inputs: Tensors, signature_name: str | None = None) -> Tensors:
        """Run signature ``signature_name`` on ``inputs`` (every input of the signature, by alias).

        A run TensorFlow fails is answered with TensorFlow's status code and message, as TF Serving
        answers it (:func:`serving_error`): a dtype or value the graph refuses is :class:`InvalidInput`,
        a missing file :class:`NotFound`, an allocation too large :class:`ResourceExhausted`, ...
        """
        name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_named(name)
        try:
            values = self._runner.run(name, signature, inputs)
        except tf.errors.OpError as exc:
            error = serving_error(exc)
            if error is None:
                raise
            raise error from None
        return {spec.name: np.asarray(value) for spec, value in zip(signature.outputs, values, strict=True)}

    def close(self) -> None:
        self._runner.close()
