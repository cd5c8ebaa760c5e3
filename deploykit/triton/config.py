"""A Triton model's ``config.pbtxt``: the message (:func:`model_config`) and its warm-up (:func:`add_warmup`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.protocol import v2_model_config
from deploykit.protocol.protos import v2_model_config_pb2 as mc
from deploykit.repository import GOLDEN
from deploykit.triton.plan import ModelPlan, Options


def model_config(model: ModelPlan, options: Options) -> mc.ModelConfig:
    """The model's ``config.pbtxt`` as a message (deploykit's copy of Triton's ModelConfig)."""
    platform = v2_model_config.PLATFORMS[model.format]
    batched = v2_model_config.batch_dimension(model.signature)
    batching = None
    if batched and options.dynamic_batching:
        batching = v2_model_config.Batching(
            options.max_batch_size, options.preferred_batch_sizes, options.max_queue_delay_microseconds
        )
    config = v2_model_config.model_config(
        model.name, platform, model.signature, batching, options.max_batch_size if batched else 0
    )
    policy = options.policy
    if policy.kind == "all":
        config.version_policy.all.SetInParent()
    elif policy.kind == "specific":
        config.version_policy.specific.versions.extend(sorted(model.versions))
    else:
        config.version_policy.latest.num_versions = policy.num_versions
    kind = mc.ModelInstanceGroup.KIND_GPU if options.gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(kind=kind, count=options.instance_count)
    if options.tensorrt and model.format == "onnx":
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = options.tensorrt
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
        accelerator.parameters["trt_engine_cache_enable"] = "1"
    return config


def add_warmup(model: ModelPlan, config: mc.ModelConfig, warmup_dir: Path) -> bool:
    """Add ``model_warmup`` from the newest version's first golden sample; False when there is none."""
    golden = model.versions[max(model.versions)] / GOLDEN
    if not golden.is_file():
        return False
    from deploykit.export.golden import load_golden  # numpy only: no framework import

    cases = load_golden(golden)
    inputs, _ = cases[min(cases)]
    warmup = config.model_warmup.add(name=f"{model.name}_golden_sample", batch_size=1, count=1)
    warmup_dir.mkdir(parents=True, exist_ok=True)
    for spec in model.signature.inputs:
        array = np.asarray(inputs[spec.name])
        sample = array[:1] if config.max_batch_size > 0 else array
        if spec.dtype == "string":
            return False  # raw BYTES warm-up files need Triton's length prefixes; not worth a warm-up
        (warmup_dir / spec.name).write_bytes(np.ascontiguousarray(sample, sample.dtype.newbyteorder("<")).tobytes())
        shape = sample.shape[1:] if config.max_batch_size > 0 else sample.shape
        warmup.inputs[spec.name].CopyFrom(
            mc.ModelWarmup.Input(
                data_type=v2_model_config.CONFIG_TYPES[spec.dtype], dims=list(shape), input_data_file=spec.name
            )
        )
    return True
