"""Silence native libraries that write straight to the process's stdout/stderr.

TensorFlow prints oneDNN/CUDA notices from C++ while it is imported (TF 2.21 ignores
``TF_CPP_MIN_LOG_LEVEL`` for them), and ONNX Runtime prints a multi-line "EP Error" when an
execution provider cannot load. Both drown deploykit's own output without telling the user anything
actionable, so the few places that trigger them run inside :func:`native_output_captured`.
"""

from __future__ import annotations

import contextlib
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
