"""MultiInference: several Classify/Regress signatures of one model version on one list of
``tf.Example`` s, checked as TF Serving checks them (``servables/tensorflow/multi_inference.cc``;
reference tfserving-api.md §1.2).

TF Serving resolves the version from the first task's ModelSpec, then checks each task in order: a
model name, the same one as the other tasks, a signature not evaluated twice, a signature the model
has, method ``tensorflow/serving/classify`` or ``.../regress`` and that method's signature checks, and
one input tensor shared by all signatures (it feeds the examples once, in one ``Session::Run``).
deploykit runs each task's signature on the same examples instead, which computes the same results.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from deploykit.errors import InvalidInput, Unimplemented
from deploykit.server import example_tasks, signature_defs
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class Task:
    """One task as requested: the model it names, its signature name (an empty one already resolved to
    ``serving_default``), its method."""

    model: str
    signature: str
    method_name: str


@dataclass(frozen=True)
class PlannedTask:
    """A checked task: the signature to run and whether it classifies (else it regresses)."""

    signature_name: str
    signature: Signature
    classify: bool


@dataclass(frozen=True)
class TaskResult:
    """A task's answer: its signature name and its classifications or (else) its regressions."""

    signature_name: str
    classifications: example_tasks.Classifications | None = None
    regressions: list[float] | None = None


def plan(tasks: list[Task], loaded: LoadedVersion) -> list[PlannedTask]:
    """Check ``tasks`` against ``loaded`` in TF Serving's order; the signatures to run, in task order."""
    planned: list[PlannedTask] = []
    model, input_tensor = "", ""
    for task in tasks:
        if not task.model:
            raise InvalidInput("Found ModelSpec with an empty model name.")
        if model and task.model != model:
            raise InvalidInput("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        model = task.model
        name = task.signature
        if any(p.signature_name == name for p in planned):
            raise InvalidInput(f"Duplicate evaluation of signature: {name}")
        signature = loaded.signatures.get(name)
        if signature is None:
            raise InvalidInput(f"Requested signature not found in model graph: {name}")
        definition = signature_defs.definition(loaded, name)
        describe = partial(signature_defs.debug_string, definition)
        if task.method_name == CLASSIFY_METHOD:
            example_tasks.check_classify_signature(signature, describe)
        elif task.method_name == REGRESS_METHOD:
            example_tasks.check_regress_signature(signature, describe)
        else:
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
        tensor = definition.inputs[signature.inputs[0].name].name
        if input_tensor and tensor != input_tensor:
            raise InvalidInput("Input tensor must be the same for all Signatures.")
        input_tensor = tensor
        planned.append(PlannedTask(name, signature, task.method_name == CLASSIFY_METHOD))
    return planned
