"""TensorFlow SavedModel adapter: one signature of a SavedModel directory (imports tensorflow)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from deploykit.quiet import native_output_captured  # noqa: E402

with native_output_captured():  # TensorFlow's import-time oneDNN/CUDA notices
    import tensorflow as tf

from deploykit.errors import UsageError  # noqa: E402
from deploykit.tensors import Signature, Tensors, TensorSpec, dtype_name  # noqa: E402

#: The signature TF Serving uses when a request names none.
DEFAULT_SIGNATURE = "serving_default"


def _spec(name: str, spec: tf.TensorSpec) -> TensorSpec:
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())  # None: unknown rank
    dtype = "string" if spec.dtype == tf.string else dtype_name(spec.dtype.as_numpy_dtype)
    return TensorSpec(name, dtype, shape)


class SavedModelRuntime:
    """Loads ``path`` (a directory with ``saved_model.pb``) and calls one of its signatures."""

    def __init__(
        self, path: Path, signature: Signature | None = None, *, signature_name: str = DEFAULT_SIGNATURE
    ) -> None:
        with native_output_captured():  # CUDA probing notices on first use of the runtime
            self.loaded = tf.saved_model.load(str(path))
        try:
            self.function = self.loaded.signatures[signature_name]
        except KeyError:
            raise UsageError(
                f"SavedModel {path} has no signature {signature_name!r}; "
                f"it has: {', '.join(self.loaded.signatures) or 'none'}"
            ) from None
        _, kwargs = self.function.structured_input_signature
        self.signature = Signature(
            tuple(_spec(name, spec) for name, spec in sorted(kwargs.items())),
            tuple(_spec(name, spec) for name, spec in sorted(self.function.structured_outputs.items())),
        )

    def predict(self, inputs: Tensors, /) -> Tensors:
        result = self.function(**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: value.numpy() for name, value in result.items()}

    def close(self) -> None:
        self.function = self.loaded = None
