"""Classify and Regress on serialized ``tf.Example`` inputs: TF Serving's signature checks, input
tensor and result reading (``servables/tensorflow/classifier.cc``, ``regressor.cc``; reference
tfserving-api.md §1.2, §1.3, §3.4).

The examples travel as one DT_STRING ``[N]`` tensor fed to the signature's single input, which TF
Serving requires to be named ``inputs``. The signature is checked before the input (input count,
outputs, input name, output names, then "Input is empty."), the results in TF Serving's order and
words (``DT_`` dtype names, ``[2,3]`` shapes). A classify signature answers ``scores`` (float
``[N, C]``) and/or ``classes`` (string ``[N, C]``); a regress signature answers ``outputs`` (float
``[N]`` or ``[N, 1]``). ``method_name`` is not checked (TF Serving's default), so TF2 signatures,
which all say ``predict``, classify and regress too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deploykit.errors import InvalidInput
from deploykit.protocol import tensor_codec
from deploykit.tensors import Signature, Tensors

INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
REGRESS_OUTPUTS = "outputs"

#: Per example, one (label, score) per class; the label is "" when the signature has no classes.
Classifications = list[list[tuple[str, float]]]


def example_tensor(examples: list[bytes]) -> np.ndarray:
    """The serialized examples as the DT_STRING ``[N]`` tensor fed to a signature's single input.

    Call after the signature checks: TF Serving checks the signature first, then the input.
    """
    if not examples:
        raise InvalidInput("Input is empty.")
    tensor = np.empty(len(examples), dtype=object)
    tensor[:] = examples
    return tensor


def _check_one_input(signature: Signature) -> None:
    if len(signature.inputs) != 1:
        raise InvalidInput("Expected one input Tensor.")


def _check_input_alias(signature: Signature, kind: str, describe: Callable[[], str]) -> None:
    if signature.input_names != [INPUTS]:
        raise InvalidInput(f"No {kind} inputs found in SignatureDef: {describe()}")


def check_classify_signature(signature: Signature, describe: Callable[[], str]) -> None:
    """A classify signature has one input, ``inputs``, and one or two outputs, among them ``classes``
    or ``scores``. ``describe()`` is the SignatureDef's text, which TF Serving's messages include."""
    _check_one_input(signature)
    if len(signature.outputs) not in (1, 2):
        raise InvalidInput(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    _check_input_alias(signature, "classification", describe)
    if not {CLASSES, SCORES} & set(signature.output_names):
        raise InvalidInput(
            f'Expected classification signature outputs to contain at least one of "{CLASSES}" or "{SCORES}". '
            f"Signature was: {describe()}"
        )


def check_regress_signature(signature: Signature, describe: Callable[[], str]) -> None:
    """A regress signature has one input, ``inputs``, and one output, ``outputs``. ``describe()`` is
    the SignatureDef's text, which TF Serving's messages include."""
    _check_one_input(signature)
    if len(signature.outputs) != 1:
        raise InvalidInput("Expected one output Tensor.")
    _check_input_alias(signature, "regression", describe)
    if signature.output_names != [REGRESS_OUTPUTS]:
        raise InvalidInput(f"No regression outputs found in SignatureDef: {describe()}")


def _dt_name(value: np.ndarray) -> str:
    """TensorFlow's name of an output's dtype (``DT_DOUBLE``), as TF Serving's messages print it."""
    try:
        return tensor_codec.dtype_label(tensor_codec.data_type_of(value))
    except InvalidInput:  # no TensorFlow equivalent: numpy's name is the best description
        return str(value.dtype)


def _shape_text(value: np.ndarray) -> str:
    """TensorFlow's ``TensorShape::DebugString``: ``[2,3]``."""
    return "[" + ",".join(str(d) for d in value.shape) + "]"


def _batch_matrix(name: str, value: np.ndarray, dtype: str, count: int) -> np.ndarray:
    """TF Serving's checks of a classify output, in its order: rank, dtype, batch size."""
    if value.ndim != 2:
        raise InvalidInput(f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(value)}")
    if _dt_name(value) != dtype:
        raise InvalidInput(f"Expected {name} Tensor of {dtype}. Got: {_dt_name(value)}")
    if value.shape[0] != count:
        raise InvalidInput(f"Expected {name} output batch size of {count}. Got: {value.shape[0]}")
    return value


def classifications(outputs: Tensors, count: int) -> Classifications:
    """(label, score) per class per example from a classify signature's outputs."""
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    if classes is not None:
        classes = _batch_matrix(CLASSES, classes, "DT_STRING", count)
    if scores is not None:
        scores = _batch_matrix(SCORES, scores, "DT_FLOAT", count)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidInput(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    present = classes if classes is not None else scores
    if present is None:
        raise InvalidInput(f"Expected classification signature outputs to contain {CLASSES!r} or {SCORES!r}")
    num_classes = present.shape[1]
    return [
        [
            (
                _text(classes[i, j]) if classes is not None else "",
                float(scores[i, j]) if scores is not None else 0.0,
            )
            for j in range(num_classes)
        ]
        for i in range(count)
    ]


def regressions(outputs: Tensors, count: int) -> list[float]:
    """One value per example from a regress signature's ``outputs`` (TF Serving's checks, in its order)."""
    values = outputs[REGRESS_OUTPUTS]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise InvalidInput(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape_text(values)}"
        )
    if values.shape[0] != count:
        raise InvalidInput(f"Input batch size did not match output batch size: {count} vs. {values.shape[0]}")
    if _dt_name(values) != "DT_FLOAT":
        raise InvalidInput(f"Expected output Tensor of DT_FLOAT.  Got: {_dt_name(values)}")  # sic: two spaces
    return [float(v) for v in values.reshape(-1)]


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
