"""Warming a version up before it goes live, with inputs that are valid for it.

In order of preference (as TF Serving, a version goes live only after its warm-up):

1. ``golden.npz`` (a deploykit export's validation inputs): real inputs the model was checked on.
2. ``assets.extra/tf_serving_warmup_requests`` (TF Serving's warm-up file, any format): its
   Predict, Classify, Regress and MultiInference records are replayed.
3. Otherwise synthetic inputs (seeded random floats, zero integers). They may be invalid for the
   model (an ``Expand`` whose input is the target shape, split sizes): a failure is logged and the
   version loads anyway, since the model itself is fine.

A failure with 1 or 2 fails the load, as in TF Serving: those inputs are meant to be valid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from deploykit.errors import ValidationError
from deploykit.export.golden import load_golden
from deploykit.protocol import tensor_codec
from deploykit.protocol.tfrecord import WARMUP_FILE, read_warmup_logs
from deploykit.repository import GOLDEN
from deploykit.runtimes.base import DEFAULT_SIGNATURE, Runtime
from deploykit.server.example_tasks import example_tensor
from deploykit.tensors import Signature, Tensors, random_inputs

log = logging.getLogger(__name__)

#: (signature name, inputs) of one warm-up request.
WarmupRequest = tuple[str, Tensors]


def warm_up(name: str, version: int, version_dir: Path, runtime: Runtime, synthetic_requests: int) -> str:
    """Run the version's warm-up requests; return which source was used ("" when none ran).

    Raises when golden or warm-up-file requests fail; synthetic failures are only logged.
    """
    if not synthetic_requests:  # --enable_model_warmup=false / warmup_requests=0: no warm-up at all
        return ""
    golden, recorded = Path(version_dir) / GOLDEN, Path(version_dir) / WARMUP_FILE
    if golden.is_file():
        source, requests = GOLDEN, _golden_requests(golden)
    elif recorded.is_file():
        source, requests = str(WARMUP_FILE), _recorded_requests(recorded, runtime.signatures)
    else:
        source, requests = "synthetic inputs", _synthetic_requests(runtime.signatures, synthetic_requests)
    for index, (signature, inputs) in enumerate(requests):
        try:
            runtime.predict(inputs, signature)
        except Exception as exc:
            message = f"warm-up request {index + 1} ({source}, signature {signature!r}) failed: {exc}"
            if source != "synthetic inputs":
                raise RuntimeError(message) from exc
            log.warning(
                "model %s version %d: %s; loading it anyway (random inputs may be invalid for this model: "
                "ship golden.npz or %s for a real warm-up)",
                name,
                version,
                message,
                WARMUP_FILE,
            )
            return ""
    return source


def _golden_requests(path: Path) -> Iterator[WarmupRequest]:
    for _, (inputs, _) in sorted(load_golden(path).items()):
        yield DEFAULT_SIGNATURE, inputs


def _recorded_requests(path: Path, signatures: Mapping[str, Signature]) -> Iterator[WarmupRequest]:
    for index, record in enumerate(read_warmup_logs(path)):
        kind = record.WhichOneof("log_type")
        if kind == "predict_log":
            request = record.predict_log.request
            inputs = {k: tensor_codec.to_ndarray(v, k) for k, v in request.inputs.items()}
            yield request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs
        elif kind in ("classify_log", "regress_log"):
            request = getattr(record, kind).request
            yield _example_request(request.model_spec.signature_name, request.input, signatures)
        elif kind == "multi_inference_log":
            request = record.multi_inference_log.request
            for task in request.tasks:
                yield _example_request(task.model_spec.signature_name, request.input, signatures)
        else:
            raise ValidationError(f"{path}: record {index} holds no Predict, Classify, Regress or MultiInference log")


def _example_request(signature_name: str, request_input, signatures: Mapping[str, Signature]) -> WarmupRequest:
    """A Classify/Regress warm-up record as the tensor its signature's single input is fed."""
    name = signature_name or DEFAULT_SIGNATURE
    kind = request_input.WhichOneof("kind")
    examples = getattr(request_input, kind).examples if kind else []
    signature = signatures.get(name)
    input_name = signature.inputs[0].name if signature is not None and signature.inputs else "inputs"
    return name, {input_name: example_tensor([e.SerializeToString() for e in examples])}


def _synthetic_requests(signatures: Mapping[str, Signature], count: int) -> Iterator[WarmupRequest]:
    signature = signatures.get(DEFAULT_SIGNATURE)
    # String or unknown-rank inputs: random data would not be meaningful for them.
    if signature is None or any(spec.shape is None or spec.dtype == "string" for spec in signature.inputs):
        return
    for seed in range(count):
        inputs = random_inputs(signature, 1, seed)
        # Integer inputs are often indices (token ids, vocabularies): zeros are valid for any size.
        yield (
            DEFAULT_SIGNATURE,
            {n: np.zeros_like(v) if np.issubdtype(v.dtype, np.integer) else v for n, v in inputs.items()},
        )
