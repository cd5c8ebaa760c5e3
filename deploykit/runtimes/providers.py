"""Which ONNX Runtime execution providers really work on this machine.

``onnxruntime.get_available_providers()`` lists what the wheel was *built* with: onnxruntime-gpu
reports CUDA and TensorRT even on a machine without a GPU, and creating a session with them prints
a multi-line "EP Error" before falling back to the CPU. :func:`working_providers` instead opens a
tiny bundled model with each accelerated provider, with ONNX Runtime's output silenced, and keeps
the providers the session actually got.
"""

from __future__ import annotations

import functools
from pathlib import Path

from deploykit.quiet import native_output_captured

#: Preference order when serving: fastest first; the CPU provider always works.
PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

#: An ONNX graph with one Identity node (IR 10, opset 18), used only to probe providers.
PROBE_MODEL = Path(__file__).with_name("probe.onnx")


def _session_gets(provider: str) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only
    try:
        session = ort.InferenceSession(str(PROBE_MODEL), options, providers=[provider, "CPUExecutionProvider"])
    except Exception:
        return False
    return provider in session.get_providers()


@functools.cache
def working_providers() -> tuple[str, ...]:
    """Execution providers that load and run here, in :data:`PREFERENCE` order.

    Returns an empty tuple when ONNX Runtime is not installed. The result is cached per process.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    built = set(ort.get_available_providers())
    found = []
    with native_output_captured():
        for provider in PREFERENCE:
            if provider == "CPUExecutionProvider" or provider in built and _session_gets(provider):
                found.append(provider)
    return tuple(found)
