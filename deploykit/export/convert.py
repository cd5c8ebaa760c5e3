"""Converters: one function per (framework, format), each writing into an empty directory.

Every converter returns a :class:`Converted` describing what it wrote and with which tool. They run
inside :func:`~deploykit.export.diagnostics.converter_diagnostics`, so converter warnings end up in
the manifest. The batch dimension (dim 0 of every input) is exported dynamic.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from deploykit import __version__
from deploykit.errors import ExportError, UsageError
from deploykit.export import onnx_tools
from deploykit.export.sources import Source, example_shape
from deploykit.tensors import TensorSpec

#: Formats each framework exports, in export order.
FORMATS: dict[str, tuple[str, ...]] = {"torch": ("torchscript", "pt2", "aoti", "onnx"), "tf": ("savedmodel", "onnx")}
#: Formats exported only when asked for (``--format aoti``): an AOTInductor compile takes 30 s to
#: minutes and needs a C++ compiler, too much for every ``deploykit export`` of a small model.
OPT_IN_FORMATS = ("aoti",)
#: Main artifact path inside a version directory ("." is the directory itself: TF Serving's layout).
#: AOTInductor insists on a ``.pt2`` suffix; ``.aoti.pt2`` keeps it apart from the eager program.
ARTIFACT_PATHS = {
    "torchscript": "model.pt",
    "pt2": "model.pt2",
    "aoti": "model.aoti.pt2",
    "onnx": "model.onnx",
    "savedmodel": ".",
}
#: What each format is, for reports: the two ``.pt2`` formats run very differently.
FORMAT_LABELS = {
    "torchscript": "torchscript (torch.jit.trace; deprecated upstream)",
    "pt2": "pt2 (eager ExportedProgram)",
    "aoti": "aoti (AOTInductor compiled package)",
    "onnx": "onnx",
    "savedmodel": "savedmodel",
}
#: Inductor settings of AOTInductor exports: freezing folds weights into the compiled graph (the
#: setting PyTorch's docs recommend for CPU inference).
AOTI_INDUCTOR_CONFIGS = {"freezing": True}
DEFAULT_OPSET = 18
#: Above this many bytes of weights, torch ONNX exports keep weights in model.onnx.data.
EXTERNAL_DATA_BYTES = 1 << 30


@dataclass
class Converted:
    """What a converter wrote."""

    artifact: str
    converter: str
    converter_version: str
    details: dict[str, Any] = field(default_factory=dict)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _example_args(inputs: tuple[TensorSpec, ...], batch: int = 2):
    """Zero tensors of batch size 2 (torch.export specialises dims of size 0 and 1)."""
    import torch

    return tuple(torch.zeros(example_shape(t, batch), dtype=getattr(torch, t.dtype)) for t in inputs)


def _dynamic_dims(inputs: tuple[TensorSpec, ...], make_dim):
    """Per input: {axis: dim} for its dynamic axes; axis 0 shares one 'batch' dim across inputs."""
    batch = make_dim("batch")
    return tuple(
        {i: batch if i == 0 else make_dim(f"{t.name}_{i}") for i, d in enumerate(t.shape or ()) if d is None}
        for t in inputs
    )


# ----------------------------------------------------------------------------------------- torch


def torch_torchscript(source: Source, dest: Path, opset: int) -> Converted:
    import torch

    traced = torch.jit.trace(source.model, _example_args(source.signature.inputs), check_trace=False)
    torch.jit.save(traced, str(dest / ARTIFACT_PATHS["torchscript"]))
    return Converted(ARTIFACT_PATHS["torchscript"], "torch.jit.trace", torch.__version__)


def torch_pt2(source: Source, dest: Path, opset: int) -> Converted:
    import torch

    dims = _dynamic_dims(source.signature.inputs, lambda n: torch.export.Dim(n))
    program = torch.export.export(source.model, _example_args(source.signature.inputs), dynamic_shapes=dims)
    torch.export.save(program, str(dest / ARTIFACT_PATHS["pt2"]))
    return Converted(ARTIFACT_PATHS["pt2"], "torch.export", torch.__version__)


def torch_aoti(source: Source, dest: Path, opset: int) -> Converted:
    """torch.export, then AOTInductor: a compiled package for this machine's device (CUDA when
    torch sees one, else CPU) with a dynamic batch dimension. Needs a C++ compiler."""
    import torch
    from torch._inductor import aoti_compile_and_package

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = source.model.to(device)
    args = tuple(a.to(device) for a in _example_args(source.signature.inputs))
    dims = _dynamic_dims(source.signature.inputs, lambda n: torch.export.Dim(n))
    try:
        with torch.no_grad():
            program = torch.export.export(model, args, dynamic_shapes=dims)
            started = time.perf_counter()
            aoti_compile_and_package(
                program, package_path=str(dest / ARTIFACT_PATHS["aoti"]), inductor_configs=dict(AOTI_INDUCTOR_CONFIGS)
            )
            compile_s = time.perf_counter() - started
    finally:
        source.model.to("cpu")
    details = {
        "device": device,
        "compile_s": round(compile_s, 3),
        "package_bytes": (dest / ARTIFACT_PATHS["aoti"]).stat().st_size,
        "inductor_configs": AOTI_INDUCTOR_CONFIGS,
        # Inductor's CPU code bakes the OpenMP thread count in at compile time (best-deploy-paths §1.2).
        "compile_threads": torch.get_num_threads(),
    }
    return Converted(ARTIFACT_PATHS["aoti"], "torch.export + aoti_compile_and_package", torch.__version__, details)


def torch_onnx(source: Source, dest: Path, opset: int) -> Converted:
    import torch

    dims = _dynamic_dims(source.signature.inputs, lambda n: n)  # names become ONNX dim_params
    program = torch.onnx.export(
        source.model,
        _example_args(source.signature.inputs),
        dynamo=True,
        opset_version=opset,
        input_names=source.signature.input_names,
        output_names=source.signature.output_names,
        dynamic_shapes=dims,
        verbose=False,
    )
    weight_bytes = sum(p.numel() * p.element_size() for p in source.model.parameters())
    path = dest / ARTIFACT_PATHS["onnx"]
    assert program is not None  # dynamo=True returns the exported program
    program.save(str(path), external_data=weight_bytes > EXTERNAL_DATA_BYTES)
    converter = "torch.onnx.export(dynamo=True)"
    onnx_tools.finalize(path, _onnx_metadata(source, converter, torch.__version__), f"{source.name}-torch-onnx")
    return Converted(ARTIFACT_PATHS["onnx"], converter, torch.__version__, {"opset": opset})


# ----------------------------------------------------------------------------------------- tf


def _serving_function(source: Source, jit_compile: bool = False):
    """A ``tf.function`` with a named input signature returning a dict of named outputs
    (``jit_compile``: XLA-compiled at the first call of each input shape)."""
    import tensorflow as tf

    spec = [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype), name=t.name) for t in source.signature.inputs]
    names = source.signature.output_names
    model = source.model

    @tf.function(input_signature=spec, jit_compile=jit_compile or None)
    def serve(*args):
        result = model(args[0] if len(args) == 1 else list(args), training=False)
        values = (
            list(result.values())
            if isinstance(result, dict)
            else (list(result) if isinstance(result, (list, tuple)) else [result])
        )
        return dict(zip(names, values, strict=True))

    return serve, spec


def tf_savedmodel(source: Source, dest: Path, opset: int, xla: bool = False) -> Converted:
    import tensorflow as tf

    from deploykit.runtimes.tf_tuning import convert_tftrt, tftrt_status

    if source.saved_model_dir is not None:  # already a SavedModel: publish it unchanged
        if xla:
            raise UsageError(
                "--xla re-traces the model; it needs a Keras or 'deploykit train' source, not a SavedModel"
            )
        shutil.copytree(source.saved_model_dir, dest, dirs_exist_ok=True)
        return Converted(ARTIFACT_PATHS["savedmodel"], "copy of the source SavedModel", tf.__version__)
    serve, _ = _serving_function(source, jit_compile=xla)
    holder = tf.Module()
    holder.model = source.model  # tracks the variables
    holder.serve = serve
    # Tag "serve" and signature "serving_default": what TF Serving loads by default.
    tf.saved_model.save(holder, str(dest), signatures={"serving_default": serve})
    details: dict[str, Any] = {"jit_compile": xla, "tftrt": tftrt_status()}
    if details["tftrt"] == "available" and not xla:  # GPU builds with TensorRT only; not run here
        plain = dest.with_name(dest.name + ".plain")
        dest.rename(plain)
        convert_tftrt(plain, dest)
        shutil.rmtree(plain)
        details["tftrt"] = "converted (FP32)"
    return Converted(ARTIFACT_PATHS["savedmodel"], "tf.saved_model.save", tf.__version__, details)


def tf_onnx(source: Source, dest: Path, opset: int) -> Converted:
    import tf2onnx

    if opset > 18:
        raise UsageError(f"tf2onnx {tf2onnx.__version__} supports opsets up to 18, not {opset}")
    path = dest / ARTIFACT_PATHS["onnx"]
    if source.saved_model_dir is not None:
        _tf2onnx_saved_model(source.saved_model_dir, path, opset)
        converter = "tf2onnx.convert --saved-model"
        onnx_tools.finalize(path, _onnx_metadata(source, converter, tf2onnx.__version__), f"{source.name}-tf-onnx")
        return Converted(ARTIFACT_PATHS["onnx"], converter, tf2onnx.__version__, {"opset": opset})
    serve, spec = _serving_function(source)
    # from_function, not from_keras: from_keras fails on Keras 3 (export-parity.md §3.2).
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))
    converter = "tf2onnx.convert.from_function"
    onnx_tools.finalize(path, _onnx_metadata(source, converter, tf2onnx.__version__), f"{source.name}-tf-onnx")
    return Converted(ARTIFACT_PATHS["onnx"], converter, tf2onnx.__version__, {"opset": opset})


def _tf2onnx_saved_model(saved_model: Path, path: Path, opset: int) -> None:
    """Convert a SavedModel with tf2onnx's command line, its documented interface for SavedModels.

    (TF1 SavedModels loaded with ``tf.saved_model.load`` cannot be re-traced by ``from_function``,
    and the in-process SavedModel loader is private.)
    """
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(saved_model),
        "--tag",
        "serve",
        "--signature_def",
        "serving_default",
        "--opset",
        str(opset),
        "--output",
        str(path),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    if done.returncode != 0 or not path.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ExportError(f"tf2onnx failed (exit {done.returncode}): {' '.join(lines[-3:])[:800]}")


def _onnx_metadata(source: Source, converter: str, converter_version: str) -> dict[str, str]:
    framework_dist = "torch" if source.framework == "torch" else "tensorflow"
    return {
        "deploykit_version": __version__,
        "source_framework": f"{framework_dist} {_version(framework_dist)}",
        "converter": converter,
        "converter_version": converter_version,
        "model_name": source.name,
    }


CONVERTERS = {
    ("torch", "torchscript"): torch_torchscript,
    ("torch", "pt2"): torch_pt2,
    ("torch", "aoti"): torch_aoti,
    ("torch", "onnx"): torch_onnx,
    ("tf", "savedmodel"): tf_savedmodel,
    ("tf", "onnx"): tf_onnx,
}


def convert(source: Source, fmt: str, dest: Path, opset: int, xla: bool = False) -> Converted:
    """Export ``source`` as ``fmt`` into the empty directory ``dest`` (``xla``: SavedModels only)."""
    try:
        converter = CONVERTERS[(source.framework, fmt)]
    except KeyError:
        raise UsageError(
            f"format {fmt!r} is not available for {source.framework} models; "
            f"expected one of: {', '.join(FORMATS[source.framework])}"
        ) from None
    try:
        converted = converter(source, dest, opset, **({"xla": True} if xla and fmt == "savedmodel" else {}))
        converted.details.setdefault("label", FORMAT_LABELS[fmt])  # in the manifest's converter record
        return converted
    except (ExportError, UsageError):
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())[:800]
        raise ExportError(
            f"{source.name}-{source.framework}-{fmt}: {type(exc).__name__} while converting: {message}"
        ) from exc
