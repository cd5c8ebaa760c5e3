"""``deploykit serve`` as a library: :class:`ServeOptions` (every option, declared once) and
:func:`serve`, which chooses the engine (deploykit's server or the real TensorFlow Serving), falls
back when TF Serving cannot run, and serves until SIGINT/SIGTERM, reporting :class:`Event` s.
"""

from deploykit.serving.api import serve
from deploykit.serving.events import Event
from deploykit.serving.options import ServeOptions

__all__ = ["Event", "ServeOptions", "serve"]
