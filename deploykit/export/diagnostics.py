"""Collect what converters warn about, for the manifest, instead of letting it flood the terminal."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Loggers of the converters deploykit drives.
CONVERTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "tf2onnx")


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def converter_diagnostics() -> Iterator[list[str]]:
    """Yield a list that fills with the warnings and WARNING+ log lines raised inside the block.

    Messages are de-duplicated in order of first appearance when the block ends.
    """
    collected: list[str] = []
    handler = _ListHandler(collected)
    loggers = [logging.getLogger(name) for name in CONVERTER_LOGGERS]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collected
            collected.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate
            lg.setLevel(level)
        unique = list(dict.fromkeys(" ".join(m.split()) for m in collected))
        collected[:] = unique
