"""ONNX Runtime adapter: serves any ONNX model ONNX Runtime can run (imports onnxruntime only)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from deploykit.errors import InvalidInput, UsageError
from deploykit.quiet import native_output_captured
from deploykit.runtimes import ort_tuning
from deploykit.runtimes.base import DEFAULT_SIGNATURE, Runtime
from deploykit.runtimes.providers import working_providers
from deploykit.tensors import Signature, Tensors, TensorSpec

log = logging.getLogger(__name__)

#: ONNX Runtime's type strings -> deploykit dtype names.
_ORT_TYPES = {
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


def _spec(arg) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise UsageError(f"ONNX tensor {arg.name!r} has type {arg.type}, which deploykit cannot carry")
    # Symbolic (str) and unknown (None) dimensions are dynamic.
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, dtype, shape)


class OnnxRuntime(Runtime):
    """An ``onnxruntime.InferenceSession`` over one ``.onnx`` file (external data beside it)."""

    def __init__(
        self,
        path: Path,
        signature: Signature | None = None,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        tuning: str | None = None,
        workers: int | None = None,
    ) -> None:
        """``tuning`` is ``tuned`` (default: :mod:`~deploykit.runtimes.ort_tuning`'s choices) or
        ``default`` (ONNX Runtime's own settings); explicit thread counts override either."""
        import onnxruntime as ort

        path = Path(path)
        if path.is_dir():
            path = path / "model.onnx"
        chosen = list(providers) if providers else list(working_providers())
        self.settings = ort_tuning.choose(
            path,
            chosen,
            signature,
            tuning=tuning,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
            workers=workers,
        )
        # A forced provider that cannot load makes ONNX Runtime print a multi-line "EP Error" and
        # fall back; keep that out of the log and say it in one line instead.
        with native_output_captured():
            self.session = ort.InferenceSession(
                str(ort_tuning.model_to_load(path, self.settings)),
                ort_tuning.session_options(self.settings),
                providers=[name for name, _ in self.settings.providers],
                provider_options=[options for _, options in self.settings.providers],
            )
        ort_tuning.publish_cache(self.settings)
        self.providers = self.session.get_providers()
        missing = [p for p in chosen if p not in self.providers]
        if missing:
            log.warning("onnx runtime %s: requested %s not usable here", path, ", ".join(missing))
        log.info("onnx runtime %s: providers %s", path, ", ".join(self.providers))
        # On a GPU, bind inputs/outputs explicitly so ONNX Runtime copies each tensor once.
        self._io_binding = self.settings.io_binding and any(p in ort_tuning.GPU_PROVIDERS for p in self.providers)
        self._graph_lock = threading.Lock()  # a captured CUDA graph replays one run at a time
        self._graph_binding: Any | None = None  # an onnxruntime IOBinding once a CUDA graph is captured
        self._signature = Signature(
            tuple(_spec(a) for a in self.session.get_inputs()),
            tuple(_spec(a) for a in self.session.get_outputs()),
        )
        self._signatures = {DEFAULT_SIGNATURE: self._signature}
        self._output_names = self._signature.output_names

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def describe(self) -> dict[str, Any]:
        """Engine, providers actually in use and every session option deploykit set."""
        import onnxruntime as ort

        return {
            "engine": "onnxruntime",
            "version": ort.__version__,
            "providers": list(self.providers),
            "session_options": self.settings.describe(),
        }

    def predict(self, inputs: Tensors, signature_name: str | None = None) -> Tensors:
        if signature_name not in (None, DEFAULT_SIGNATURE):
            self.signature_named(signature_name)  # raises, naming the one signature there is
        try:
            inputs = {name: _to_onnx_strings(name, value) for name, value in inputs.items()}
            if self._io_binding:
                return self._predict_bound(inputs)
            outputs = self.session.run(self._output_names, inputs)
        except InvalidArgument as exc:  # shapes the graph cannot take (e.g. a mismatched batch)
            raise InvalidInput(" ".join(str(exc).split())) from exc
        return {
            name: _from_onnx_strings(np.asarray(value)) for name, value in zip(self._output_names, outputs, strict=True)
        }

    def _predict_bound(self, inputs: Tensors) -> Tensors:
        """GPU path (not exercised on CPU-only machines): inputs copied to the device once, outputs
        allocated by ONNX Runtime on the host."""
        if self.settings.cuda_graph:
            return self._predict_graph(inputs)
        binding = self.session.io_binding()
        for name, value in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu(), strict=True))

    def _predict_graph(self, inputs: Tensors) -> Tensors:
        """CUDA graphs (static shapes only; not exercised without a GPU): device buffers bound once
        at fixed addresses, new inputs copied into them in place, the captured graph replayed."""
        import onnxruntime as ort

        with self._graph_lock:
            if self._graph_binding is None:
                binding = self.session.io_binding()
                self._graph_inputs = {
                    name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", 0)
                    for name, value in inputs.items()
                }
                for name, value in self._graph_inputs.items():
                    binding.bind_ortvalue_input(name, value)
                for name in self._output_names:
                    binding.bind_output(name, "cuda")
                self._graph_binding = binding
            else:
                for name, value in inputs.items():
                    self._graph_inputs[name].update_inplace(np.ascontiguousarray(value))
            self.session.run_with_iobinding(self._graph_binding)
            return dict(zip(self._output_names, self._graph_binding.copy_outputs_to_cpu(), strict=True))

    def close(self) -> None:
        self.session = None


def _to_onnx_strings(name: str, value: np.ndarray) -> np.ndarray:
    """deploykit's string tensors hold ``bytes``; ONNX Runtime's Python binding takes ``str`` (it would
    feed ``str(b"...")``, the repr) and carries UTF-8 only."""
    if value.dtype != object:
        return value
    try:
        return np.vectorize(lambda item: item.decode() if isinstance(item, bytes) else item, otypes=[object])(value)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"string input '{name}' is not UTF-8 ({exc}); ONNX Runtime carries UTF-8 strings only"
        ) from None


def _from_onnx_strings(value: np.ndarray) -> np.ndarray:
    """ONNX Runtime's ``str`` outputs as deploykit's ``bytes`` (UTF-8)."""
    if value.dtype != object or value.size == 0:
        return value
    return np.vectorize(lambda item: item.encode() if isinstance(item, str) else item, otypes=[object])(value)
