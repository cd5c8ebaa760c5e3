"""TensorFlow configured like ONNX Runtime: the same thread budget, XLA as an export option, and
TF-TRT where a GPU build still has it (imports tensorflow).

- Threads: intra-op = physical cores // serving workers, inter-op = 1 (ops run one after another,
  each on the whole intra-op pool: ONNX Runtime's sequential mode). TensorFlow accepts them only
  before its runtime initialises, so :func:`configure_threads` runs when the first SavedModel of
  a process loads; if TensorFlow already started (another model, a user's session) it keeps its
  settings and says so in the description.
- XLA: ``deploykit export --xla`` saves the serving function with ``jit_compile=True``. The flag is
  what gets saved; XLA compiles at the first call of every input shape (best-deploy-paths.md §3).
- TF-TRT: TensorFlow's CUDA builds dropped TensorRT in 2.18; :func:`tftrt_status` says whether
  this build has it, and :func:`convert_tftrt` converts where it does (not runnable here: no GPU).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from deploykit.runtimes.threads import serving_workers, thread_budget


@functools.cache
def configure_threads() -> dict[str, Any]:
    """Set TensorFlow's thread pools once per process; returns what is in effect."""
    import tensorflow as tf

    wanted = thread_budget()
    applied = True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # "cannot be modified after initialization"
        applied = False
    return {
        "intra_op_parallelism_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_parallelism_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "workers": serving_workers(),
        "set_by_deploykit": applied,
    }


def tftrt_status() -> str:
    """``available`` or why TF-TRT cannot be used with this TensorFlow on this machine."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return "unavailable: no GPU"
    try:
        from tensorflow.python.compiler.tensorrt import trt_convert  # noqa: F401
        from tensorflow.python.compiler.tensorrt.utils import is_linked_tensorrt_version  # noqa: F401
    except ImportError:
        return f"unavailable: TensorFlow {tf.__version__} has no TensorRT (removed from CUDA builds in 2.18)"
    return "available"


def convert_tftrt(saved_model: Path, out: Path) -> None:
    """Convert a SavedModel with TF-TRT (FP32, engines built at first call). GPU builds only."""
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    converter = trt.TrtGraphConverterV2(
        input_saved_model_dir=str(saved_model), precision_mode=trt.TrtPrecisionMode.FP32
    )
    converter.convert()
    converter.save(str(out))
