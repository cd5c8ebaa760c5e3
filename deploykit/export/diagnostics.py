"""Collect what converters warn about, for the manifest, instead of letting it flood the terminal."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Logger name prefixes of the converters deploykit drives. torch configures many of its loggers
#: with their own stderr handlers and ``propagate=False``, so each one is redirected, not just the root.
CONVERTER_PREFIXES = ("torch", "onnxscript", "onnx_ir", "tf2onnx")


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}")


def _converter_loggers() -> list[logging.Logger]:
    names = [n for n in logging.root.manager.loggerDict if n.startswith(CONVERTER_PREFIXES)]
    names += [p for p in CONVERTER_PREFIXES if p not in names]
    return [logging.getLogger(n) for n in names]


@contextlib.contextmanager
def converter_diagnostics() -> Iterator[list[str]]:
    """Yield a list that fills with the warnings and WARNING+ log lines raised inside the block.

    While the block runs, converter loggers write only to that list (not to the terminal).
    Messages are de-duplicated in order of first appearance when the block ends.
    """
    collected: list[str] = []
    handler = _ListHandler(collected)
    saved = {lg: (lg.handlers[:], lg.propagate) for lg in _converter_loggers()}
    for lg in saved:
        lg.handlers = [handler]
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collected
            collected.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    finally:
        for lg, (handlers, propagate) in saved.items():
            lg.handlers = handlers
            lg.propagate = propagate
        unique = list(dict.fromkeys(" ".join(m.split()) for m in collected))
        collected[:] = unique
