"""deploykit's optional native gRPC data plane (a C++ extension; see ``deploykit/native/src``).

Built by ``python -m deploykit.native.build`` (``make native``) from Debian's gRPC C++ packages;
without it, ``deploykit serve`` keeps the Python data plane. :func:`load` returns the extension
module or None, and :func:`unavailable_reason` says why it is missing.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

_module: ModuleType | None = None
_reason: str | None = None


def load() -> ModuleType | None:
    """The compiled extension ``deploykit.native._dataplane``, or None when it is not built."""
    global _module, _reason
    if _module is None and _reason is None:
        # Deep binding: the extension and the libgrpc++/libprotobuf it links use their own symbols,
        # not the copies TensorFlow puts in the process's global scope (it loads them RTLD_GLOBAL;
        # binding to those crashes).
        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        try:
            _module = importlib.import_module("deploykit.native._dataplane")
        except ImportError as exc:
            _reason = (
                f"the native data plane is not built ({exc}); build it with `make native` "
                "or `python -m deploykit.native.build`"
            )
        finally:
            sys.setdlopenflags(flags)
    return _module


def available() -> bool:
    """Whether the native data plane is built and loads."""
    return load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`load` returns None (None when the extension loads)."""
    load()
    return _reason
