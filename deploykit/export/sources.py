"""Export sources: an eager model plus everything an exporter needs to know about it.

A :class:`Source` is one framework's model in inference mode, its :class:`~deploykit.tensors.Signature`
and a ``reference`` function computing its eager outputs, which every exported artifact must match.
Loaders build sources from:

- a ``deploykit train`` run directory (``spec.json`` + ``model.safetensors`` / ``model.keras``),
- a PyTorch factory ``package.module:callable`` plus a weights file (state dict or safetensors),
- a Keras ``.keras`` file,
- an existing SavedModel directory.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import ExportError, UsageError
from deploykit.fsutil import check_name
from deploykit.repository import file_sha256
from deploykit.tensors import Signature, Tensors, TensorSpec

#: Output name of every zoo model (its logits).
ZOO_OUTPUT = "logits"
#: Layout of the canonical zoo inputs, recorded in manifests (bert: token ids and mask, (N, T)).
ZOO_LAYOUTS = {"mlp": "NF", "cnn": "NHWC", "transformer": "NTF", "resnet50": "NHWC", "bert": "NT"}


@dataclass
class Source:
    """One framework's eager model, ready to export."""

    framework: str  # "torch" or "tf"
    name: str  # base model name; artifacts are named NAME-FRAMEWORK-FORMAT
    model: Any  # torch.nn.Module in eval mode, keras.Model, or a loaded SavedModel
    signature: Signature
    reference: Callable[[Tensors], Tensors]
    origin: dict[str, Any] = field(default_factory=dict)
    layout: str | None = None
    #: For SavedModel sources: the directory, exported as-is rather than re-saved.
    saved_model_dir: Path | None = None
    #: (batch, seed) -> validation inputs the model is meant to see (zoo models); None = random
    #: inputs from the signature.
    example_inputs: Callable[[int, int], Tensors] | None = None
    #: Validation tolerance the model's depth calls for, when the user gives none (zoo models).
    tolerance: Any = None


# ----------------------------------------------------------------------------------------- torch


def _torch_reference(model, signature: Signature) -> Callable[[Tensors], Tensors]:
    import torch

    from deploykit.runtimes.torch import outputs_by_name

    def reference(inputs: Tensors) -> Tensors:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in signature.input_names]
        with torch.inference_mode():
            return outputs_by_name(model(*args), signature.output_names)

    return reference


def load_torch_weights(model, weights: Path) -> None:
    """Load a state dict (``.safetensors``, or a ``torch.save``'d dict read with ``weights_only``)."""
    import torch

    if not weights.is_file():
        raise ExportError(f"weights file {weights} does not exist")
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot read weights {weights}: {exc}") from exc
    if not isinstance(state, dict):
        raise ExportError(f"weights {weights} hold a {type(state).__name__}, expected a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # torch lists missing/unexpected keys and size mismatches; keep its text, on one line.
        detail = " ".join(str(exc).split())
        raise ExportError(f"weights {weights} do not fit the model: {detail}") from exc


def example_shape(spec: TensorSpec, batch: int = 2) -> list[int]:
    """A concrete shape to trace with: dynamic dimensions become ``batch`` (2 by default: torch.export
    specialises dims of size 0 and 1); an unknown rank is refused."""
    if spec.shape is None:
        example = f"{spec.name}:{spec.dtype}[-1,8]"
        raise UsageError(f"input {spec.name!r} has an unknown rank; give its shape (e.g. {example})")
    return [batch if d is None else d for d in spec.shape]


def _torch_signature_from_outputs(model, inputs: list[TensorSpec], output_names: list[str] | None) -> Signature:
    """Run the model once on a batch of 2 to learn its outputs' count, dtypes and shapes."""
    import torch

    args = [torch.zeros(example_shape(t), dtype=getattr(torch, t.dtype)) for t in inputs]
    with torch.inference_mode():
        result = model(*args)
    values = (
        list(result.values()) if isinstance(result, dict) else [result] if torch.is_tensor(result) else list(result)
    )
    names = (
        list(result)
        if isinstance(result, dict)
        else output_names or (["output"] if len(values) == 1 else [f"output_{i}" for i in range(len(values))])
    )
    if len(names) != len(values):
        raise UsageError(f"model returns {len(values)} output(s) but {len(names)} output name(s) were given")
    outputs = tuple(
        TensorSpec(n, str(v.dtype).removeprefix("torch."), (None, *v.shape[1:]))
        for n, v in zip(names, values, strict=True)
    )
    return Signature(tuple(inputs), outputs)


def torch_source_from_factory(
    factory: str,
    weights: Path | None,
    inputs: list[TensorSpec],
    output_names: list[str] | None = None,
    name: str | None = None,
) -> Source:
    """A user's PyTorch model: ``package.module:callable`` returning an ``nn.Module``."""
    module_name, _, attr = factory.partition(":")
    if not module_name or not attr:
        raise UsageError(f"factory {factory!r} must look like package.module:callable")
    if not inputs:
        raise UsageError("a PyTorch factory needs its input signature: --input NAME:DTYPE[DIMS] (one per input)")
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(f"--input names must be unique; given more than once: {', '.join(duplicated)}")
    # As `python -m`: the working directory comes first, so `mypkg.models:build` next to mypkg/ imports.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        build = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ExportError(f"cannot import factory {factory!r}: {exc}") from exc
    try:
        model = build()
    except Exception as exc:
        raise ExportError(f"factory {factory!r} raised {type(exc).__name__}: {exc}") from exc
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"factory {factory!r} returned {type(model).__name__}, expected a torch.nn.Module")
    if weights is not None:
        load_torch_weights(model, Path(weights))
    model.eval()
    try:
        signature = _torch_signature_from_outputs(model, inputs, output_names)
    except UsageError:
        raise
    except Exception as exc:
        raise ExportError(f"model from {factory!r} fails on inputs {[str(t) for t in inputs]}: {exc}") from exc
    origin = {"kind": "torch-factory", "factory": factory}
    if weights is not None:
        origin.update(weights=str(weights), weights_sha256=file_sha256(Path(weights)))
    return Source("torch", name or attr, model, signature, _torch_reference(model, signature), origin)


# ----------------------------------------------------------------------------------------- keras


def _keras_reference(model, signature: Signature) -> Callable[[Tensors], Tensors]:
    def reference(inputs: Tensors) -> Tensors:
        args = [inputs[n] for n in signature.input_names]
        result = model(args[0] if len(args) == 1 else args, training=False)
        values = (
            list(result.values())
            if isinstance(result, dict)
            else result
            if isinstance(result, (list, tuple))
            else [result]
        )
        return {n: np.asarray(v) for n, v in zip(signature.output_names, values, strict=True)}

    return reference


def _keras_signature(model, output_names: list[str] | None) -> Signature:
    from deploykit.tensors import dtype_name

    inputs = tuple(TensorSpec(t.name.split(":")[0], dtype_name(str(t.dtype)), tuple(t.shape)) for t in model.inputs)
    outputs_raw = model.outputs
    names = output_names or (["output"] if len(outputs_raw) == 1 else [f"output_{i}" for i in range(len(outputs_raw))])
    if len(names) != len(outputs_raw):
        raise UsageError(f"model has {len(outputs_raw)} output(s) but {len(names)} output name(s) were given")
    outputs = tuple(
        TensorSpec(n, dtype_name(str(t.dtype)), tuple(t.shape)) for n, t in zip(names, outputs_raw, strict=True)
    )
    return Signature(inputs, outputs)


def keras_source_from_file(path: Path, output_names: list[str] | None = None, name: str | None = None) -> Source:
    """A Keras 3 model saved as ``.keras``."""
    if not zipfile.is_zipfile(path):  # Keras would report a corrupt archive as "File not found"
        raise ExportError(f"{path}: not a Keras archive (a .keras file is a zip archive; this one is corrupt)")
    from deploykit.zoo import keras_models  # registers deploykit's custom layers, pins the TF backend

    try:
        model = keras_models.keras.saving.load_model(str(path))
    except Exception as exc:
        raise ExportError(f"cannot load Keras model {path}: {exc}") from exc
    signature = _keras_signature(model, output_names)
    origin = {"kind": "keras-file", "path": str(path), "sha256": file_sha256(path)}
    return Source("tf", name or path.stem, model, signature, _keras_reference(model, signature), origin)


def saved_model_source(path: Path, name: str | None = None) -> Source:
    """An existing SavedModel directory; its ``serving_default`` signature is the reference."""
    from deploykit.runtimes.tensorflow import SavedModelRuntime

    try:
        runtime = SavedModelRuntime(path)
    except UsageError:
        raise
    except Exception as exc:
        raise ExportError(f"cannot load SavedModel {path}: {exc}") from exc
    origin = {"kind": "savedmodel", "path": str(path)}
    return Source("tf", name or path.name, runtime, runtime.signature, runtime.predict, origin, saved_model_dir=path)


# ----------------------------------------------------------------------------------------- zoo


def zoo_sources(run_dir: Path, frameworks: tuple[str, ...], name: str | None = None) -> list[Source]:
    """The trained twins of a ``deploykit train`` output directory."""
    from deploykit.export.parity import Tolerance
    from deploykit.train.run import CHECKPOINTS, SPEC_FILE
    from deploykit.zoo.spec import spec_from_dict

    spec = spec_from_dict(json.loads((run_dir / SPEC_FILE).read_text()))
    sources = []
    for fw in frameworks:
        checkpoint = run_dir / CHECKPOINTS[fw]
        if not checkpoint.is_file():
            raise ExportError(f"{run_dir} has no {fw} checkpoint ({checkpoint.name}); train it with --framework {fw}")
        signature = Signature(spec.inputs(), (TensorSpec(ZOO_OUTPUT, "float32", (None, spec.num_classes)),))
        origin = {
            "kind": "zoo-run",
            "path": str(run_dir),
            "architecture": spec.to_dict(),
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": file_sha256(checkpoint),
        }
        if fw == "torch":
            from deploykit.zoo import torch_models

            model = torch_models.build(spec)
            load_torch_weights(model, checkpoint)
            model.eval()
            reference = _torch_reference(model, signature)
        else:
            source = keras_source_from_file(checkpoint, [ZOO_OUTPUT])
            model, reference = source.model, source.reference
        source = Source(fw, name or spec.name, model, signature, reference, origin, ZOO_LAYOUTS[spec.name])
        source.example_inputs = spec.example_inputs
        source.tolerance = Tolerance(*spec.parity_tolerance)
        sources.append(source)
    return sources


def is_zoo_run(path: Path) -> bool:
    from deploykit.train.run import SPEC_FILE

    return path.is_dir() and (path / SPEC_FILE).is_file()


def load_sources(
    source: str,
    frameworks: tuple[str, ...],
    *,
    weights: Path | None = None,
    inputs: list[TensorSpec] | None = None,
    output_names: list[str] | None = None,
    name: str | None = None,
) -> list[Source]:
    """Resolve a SOURCE argument of ``deploykit export`` into sources.

    ``source`` is a ``deploykit train`` directory, a ``.keras`` file, a SavedModel directory, or a
    ``package.module:callable`` PyTorch factory (then ``weights`` and ``inputs`` apply).
    """
    if name is not None:
        check_name(name, "--name")
    sources = _resolve(source, frameworks, weights, inputs, output_names, name)
    for found in sources:  # names derived from a file or factory become directories too
        check_name(found.name, "model name (from the source; choose one with --name)")
    return sources


def _resolve(source, frameworks, weights, inputs, output_names, name) -> list[Source]:
    path = Path(source)
    if is_zoo_run(path):
        available = tuple(fw for fw in frameworks if (path / _checkpoint_name(fw)).is_file())
        if not available:
            raise ExportError(f"{path} holds no checkpoint for {', '.join(frameworks)}")
        return zoo_sources(path, available, name)
    if path.suffix == ".keras":
        if not path.is_file():
            raise ExportError(f"{path}: no such Keras file")
        return [keras_source_from_file(path, output_names, name)]
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return [saved_model_source(path, name)]
    if ":" in source and not path.exists():
        return [torch_source_from_factory(source, weights, inputs or [], output_names, name)]
    raise UsageError(
        f"cannot export {source!r}: expected a 'deploykit train' output directory, a .keras file, "
        "a SavedModel directory, or a PyTorch factory package.module:callable"
    )


def _checkpoint_name(framework: str) -> str:
    from deploykit.train.run import CHECKPOINTS

    return CHECKPOINTS[framework]
