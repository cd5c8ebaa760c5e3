"""Silence native libraries that write straight to the process's stdout/stderr.

TensorFlow prints oneDNN/CUDA notices from C++ while it is imported (TF 2.21 ignores
``TF_CPP_MIN_LOG_LEVEL`` for them), and ONNX Runtime prints a multi-line "EP Error" when an
execution provider cannot load. Both drown deploykit's own output without telling the user anything
actionable, so the few places that trigger them run inside :func:`native_output_captured`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

# stdout/stderr are process-wide: two threads swapping them at once would restore each other's
# captures (and close the file the other is writing to). One capture at a time.
_LOCK = threading.RLock()


@contextlib.contextmanager
def native_output_captured(replay_on_error: bool = True) -> Iterator[None]:
    """Capture stdout and stderr, at the Python level and the file-descriptor level.

    What was captured is dropped when the block succeeds and, with ``replay_on_error``, written to
    stderr when it raises, so a failure keeps its diagnostics.
    """
    with _LOCK, _captured(replay_on_error):
        yield


@contextlib.contextmanager
def _captured(replay_on_error: bool) -> Iterator[None]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    failed = False
    with tempfile.TemporaryFile(mode="w+") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed and replay_on_error:
                sink.seek(0)
                sys.stderr.write(sink.read())


#: Environment for TensorFlow's C++ logging: only fatal messages (errors still reach the user as
#: Python exceptions). Set before TensorFlow is imported; a value the user set is kept.
TF_QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ log lines (``failed call to cuInit``, ``Could not find cuda drivers``,
    oneDNN and CPU-feature notices, ``NodeDef mentions attribute ...``) out of the terminal.

    Sets :data:`TF_QUIET_ENVIRONMENT` and captures the process's output while ``tensorflow`` itself
    is imported (its CUDA stub prints before any log level applies). Call it before TensorFlow is
    imported; ``deploykit --verbose`` skips it.
    """
    for key, value in TF_QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders, then runs its import inside
    :func:`native_output_captured` (replayed if the import fails)."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports are cached in sys.modules
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def quiet_exec(module):
            with native_output_captured():
                exec_module(module)

        loader.exec_module = quiet_exec
        return spec
