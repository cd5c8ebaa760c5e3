"""Controllable runtimes for tests whose subject is timing: they make orderings happen by
construction (a gate the test opens) instead of by sizing computations against the wall clock."""

from __future__ import annotations

import threading
from typing import Any

from deploykit.runtimes.base import Runtime
from deploykit.tensors import Signature, Tensors


class Gate(Runtime):
    """A real runtime behind a gate: after ``hold()`` every model call waits until ``release()``.

    ``entered`` is set when a call reached the gate; ``calls`` records the batch size (rows,
    padding included) of every call the model received; ``finished`` the inputs of every call the
    model completed, in completion order.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.advisory_shapes = runtime.advisory_shapes
        self.calls: list[int] = []
        self.finished: list[Tensors] = []
        self.entered = threading.Event()
        self._open = threading.Event()
        self._open.set()

    @property
    def signatures(self) -> dict[str, Signature]:
        return dict(self.runtime.signatures)

    def describe(self) -> dict[str, Any]:
        return self.runtime.describe()

    def hold(self) -> None:
        self.entered.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def predict(self, inputs: Tensors, signature_name: str | None = None) -> Tensors:
        self.calls.append(next(iter(inputs.values())).shape[0])
        self.entered.set()
        assert self._open.wait(60), "test never released the gate"
        outputs = self.runtime.predict(inputs, signature_name)
        self.finished.append(inputs)
        return outputs

    def close(self) -> None:
        self.runtime.close()
