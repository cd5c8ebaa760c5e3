"""ONNX Runtime configured, not defaulted: session options and execution-provider options chosen
from the machine, the model and the number of serving workers (imports onnxruntime lazily).

:func:`choose` decides, :func:`session_options` builds ``onnxruntime.SessionOptions`` from the
decision, and :meth:`OrtSettings.describe` is what manifests and reports record. The rules
(best-deploy-paths.md §2):

- all graph optimizations (constant folding, Conv+BN and MatMul+Add fusions, GELU/LayerNorm/
  attention fusions, NCHWc layouts on CPU), and the optimized graph cached on disk so a restart
  skips the optimizer;
- intra-op threads = physical cores // serving workers; sequential execution (one inter-op
  thread: parallel mode helps only branchy graphs); thread spinning off when several processes
  share the cores (idle spinners steal the other workers' cycles);
- memory arena and memory pattern on (repeated shapes reuse their buffers);
- on GPU: TensorRT (engine and timing caches) > CUDA, IO binding, and CUDA graphs when every
  input shape is static (CUDA graphs replay fixed shapes and addresses only).

``tuning="default"`` keeps ONNX Runtime's defaults (for comparisons); explicit thread counts win.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit.runtimes.threads import physical_cores, serving_workers, thread_budget
from deploykit.tensors import Signature

#: ``tuned`` (deploykit's choices) or ``default`` (ONNX Runtime's own); read when no tuning is given.
TUNING_ENV = "DEPLOYKIT_ORT_TUNING"
#: Where optimized graphs and TensorRT engines are cached (default ``~/.cache/deploykit``).
CACHE_ENV = "DEPLOYKIT_CACHE_DIR"

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (CUDA, TENSORRT)


@dataclass
class OrtSettings:
    """Everything deploykit set on one ONNX Runtime session."""

    tuning: str
    graph_optimization_level: str
    intra_op_num_threads: int
    inter_op_num_threads: int
    execution_mode: str
    allow_spinning: bool | None
    enable_cpu_mem_arena: bool
    enable_mem_pattern: bool
    #: Provider name -> its options, in priority order.
    providers: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    io_binding: bool = False
    cuda_graph: bool = False
    #: The optimized graph written on first load and read on later loads (None: not cached).
    optimized_model_path: str | None = None
    #: Whether this load read the cached optimized graph.
    optimized_model_cached: bool = False
    cores: int = 0
    workers: int = 1

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["providers"] = [name for name, _ in self.providers]
        data["provider_options"] = {name: options for name, options in self.providers if options}
        return data


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deploykit")


def provider_options(
    providers: Sequence[str], static_shapes: bool, cache: Path | None = None
) -> list[tuple[str, dict[str, str]]]:
    """Options per provider: TensorRT with engine and timing caches, CUDA with heuristic conv
    algorithm search (no slow exhaustive first runs) and CUDA graphs for static shapes; the CPU
    provider always last, as the fallback. Pure: unit-tested with made-up provider lists."""
    cache = cache or cache_dir()
    chosen = []
    for name in providers:
        if name == TENSORRT:
            engines = str(cache / "tensorrt")
            chosen.append(
                (
                    name,
                    {
                        "trt_engine_cache_enable": "1",
                        "trt_engine_cache_path": engines,
                        "trt_timing_cache_enable": "1",
                        "trt_timing_cache_path": engines,
                        # fp32 keeps the validated numerics; fp16 is a deliberate, re-validated choice.
                        "trt_fp16_enable": "0",
                        **({"trt_cuda_graph_enable": "1"} if static_shapes else {}),
                    },
                )
            )
        elif name == CUDA:
            chosen.append(
                (
                    name,
                    {
                        "device_id": "0",
                        "cudnn_conv_algo_search": "HEURISTIC",
                        "do_copy_in_default_stream": "1",
                        **({"enable_cuda_graph": "1"} if static_shapes else {}),
                    },
                )
            )
        elif name != CPU:
            chosen.append((name, {}))
    return [*chosen, (CPU, {})]


def _static(signature: Signature | None) -> bool:
    return signature is not None and all(
        spec.shape is not None and all(d is not None for d in spec.shape) for spec in signature.inputs
    )


def _cache_path(model: Path, level: str, providers: Sequence[str]) -> Path:
    """Keyed by the model file (path, size, mtime), ONNX Runtime's version, level and providers:
    an optimized graph is only valid for the same runtime, providers and hardware."""
    import onnxruntime as ort

    stat = model.stat()
    key = f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ort.__version__}|{level}|{','.join(providers)}"
    return cache_dir() / "ort-optimized" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.onnx"


def choose(
    model: Path,
    providers: Sequence[str],
    signature: Signature | None = None,
    *,
    tuning: str | None = None,
    intra_op_threads: int = 0,
    inter_op_threads: int = 0,
    workers: int | None = None,
    cache: bool = True,
) -> OrtSettings:
    """Settings for a session over ``model`` with ``providers`` (in priority order)."""
    tuning = tuning or os.environ.get(TUNING_ENV, "tuned")
    if tuning not in ("tuned", "default"):
        from deploykit.errors import UsageError

        raise UsageError(f"ONNX Runtime tuning {tuning!r}: expected 'tuned' or 'default'")
    workers = workers or serving_workers()
    on_gpu = any(p in GPU_PROVIDERS for p in providers)
    if tuning == "default":
        return OrtSettings(
            tuning, "ORT_ENABLE_ALL", intra_op_threads, inter_op_threads, "ORT_SEQUENTIAL", None, True, True,
            [(p, {}) for p in providers], io_binding=on_gpu, cores=physical_cores(), workers=workers,
        )  # fmt: skip
    static = _static(signature)
    chosen = provider_options(providers, static)
    settings = OrtSettings(
        tuning="tuned",
        graph_optimization_level="ORT_ENABLE_ALL",
        intra_op_num_threads=intra_op_threads or thread_budget(workers),
        inter_op_num_threads=inter_op_threads or 1,
        execution_mode="ORT_SEQUENTIAL",
        allow_spinning=workers == 1,
        enable_cpu_mem_arena=True,
        enable_mem_pattern=True,
        providers=chosen,
        io_binding=on_gpu,
        cuda_graph=static and on_gpu,
        cores=physical_cores(),
        workers=workers,
    )
    # TensorRT builds its own engines from the original graph: no ONNX Runtime graph cache for it.
    if cache and TENSORRT not in providers:
        path = _cache_path(model, settings.graph_optimization_level, [p for p, _ in chosen])
        settings.optimized_model_path = str(path)
        settings.optimized_model_cached = path.is_file()
    return settings


def session_options(settings: OrtSettings):
    """``onnxruntime.SessionOptions`` for ``settings``; the model to load is :func:`model_to_load`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_num_threads
    options.inter_op_num_threads = settings.inter_op_num_threads
    if settings.tuning == "default":
        return options
    options.execution_mode = getattr(ort.ExecutionMode, settings.execution_mode)
    options.enable_cpu_mem_arena = settings.enable_cpu_mem_arena
    options.enable_mem_pattern = settings.enable_mem_pattern and not settings.cuda_graph
    spin = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    level = getattr(ort.GraphOptimizationLevel, settings.graph_optimization_level)
    if settings.optimized_model_cached:
        # The cached graph is already optimized (and laid out for this CPU): skip the optimizer.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    else:
        options.graph_optimization_level = level
        if settings.optimized_model_path:
            Path(settings.optimized_model_path).parent.mkdir(parents=True, exist_ok=True)
            # Written next to its final name, then renamed: a concurrent load never reads half a file.
            options.optimized_model_filepath = settings.optimized_model_path + f".{os.getpid()}.tmp"
    return options


def model_to_load(model: Path, settings: OrtSettings) -> Path:
    """The cached optimized graph when there is one, else the model itself."""
    if not settings.optimized_model_cached:
        return model
    assert settings.optimized_model_path is not None  # cached is only set with the path it was found at
    return Path(settings.optimized_model_path)


def publish_cache(settings: OrtSettings) -> None:
    """After a session wrote its optimized graph: move it into place (best effort)."""
    if settings.optimized_model_path and not settings.optimized_model_cached:
        written = Path(settings.optimized_model_path + f".{os.getpid()}.tmp")
        if written.is_file():
            os.replace(written, settings.optimized_model_path)
