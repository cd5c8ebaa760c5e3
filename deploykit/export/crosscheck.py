"""Cross-framework check for zoo models: the trained PyTorch twin, its weights transferred into a
fresh Keras twin, must compute the same logits. This proves the two architectures equivalent for
the exported weights, independently of any converter."""

from __future__ import annotations

from deploykit.export.parity import OutputParity, Tolerance, compare
from deploykit.export.sources import Source


def torch_vs_keras_twin(
    torch_source: Source, spec, batch_sizes, seed: int, tolerance: Tolerance | None = None
) -> list[OutputParity]:
    import numpy as np

    from deploykit.zoo import keras_models
    from deploykit.zoo.transfer import torch_to_keras

    twin = keras_models.build(spec)
    torch_to_keras(spec, torch_source.model, twin)
    rows = []
    tolerance = tolerance or Tolerance(*spec.parity_tolerance)
    for batch in batch_sizes:
        inputs = spec.example_inputs(batch, seed)
        args = [inputs[n] for n in torch_source.signature.input_names]
        got = {
            torch_source.signature.output_names[0]: np.asarray(
                twin(args[0] if len(args) == 1 else args, training=False)
            )
        }
        rows += compare(torch_source.reference(inputs), got, batch, default=tolerance)
    return rows
