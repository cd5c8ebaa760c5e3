"""TF Serving's batching parameters (``--enable_batching --batching_parameters_file``), validated.

The file is a text-format ``BatchingParameters`` message (``session_bundle_config.proto``), e.g.
TF Serving's own test file::

    max_batch_size { value: 128 }
    batch_timeout_micros { value: 0 }
    max_enqueued_batches { value: 1000000 }
    num_batch_threads { value: 8 }

Every field is optional; an omitted one takes the default of TF Serving's batch scheduler
(``SharedBatchScheduler::QueueOptions``/``Options``). The checks and their messages are TF
Serving's (``batching_session.cc``, ``shared_batch_scheduler.h``), prefixed with the file name.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.protocol import text_proto
from deploykit.protocol.protos.config_pb2 import BatchingParameters

log = logging.getLogger(__name__)

#: The thread pool name TF Serving's model server uses when batching is on without a file.
DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"


@dataclass(frozen=True)
class BatchingOptions:
    """How the dynamic batcher forms and runs batches (TF Serving's defaults unless given).

    ``max_batch_size`` is the largest request (in rows) accepted and, without large batch splitting,
    the largest batch run; ``max_execution_batch_size`` is the largest batch run (it differs only
    with ``enable_large_batch_splitting``). ``allowed_batch_sizes``, when given, are the sizes a
    batch is padded up to.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_execution_batch_size is None:
            object.__setattr__(self, "max_execution_batch_size", self.max_batch_size)
        self.validate()

    @property
    def batch_limit(self) -> int:
        """Most rows one batch may hold (before padding)."""
        return self.max_execution_batch_size if self.enable_large_batch_splitting else self.max_batch_size

    def validate(self) -> None:
        """TF Serving's checks; :class:`UsageError` with TF Serving's message otherwise."""
        if self.max_batch_size <= 0:
            raise UsageError(f"max_batch_size must be positive; was {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise UsageError(f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}")
        if self.max_enqueued_batches <= 0:
            raise UsageError(f"max_enqueued_batches must be positive; was {self.max_enqueued_batches}")
        if self.num_batch_threads <= 0:
            raise UsageError(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if self.enable_large_batch_splitting:
            if self.max_execution_batch_size <= 0:
                raise UsageError(f"max_execution_batch_size must be positive; was {self.max_execution_batch_size}")
            if self.max_execution_batch_size > self.max_batch_size:
                raise UsageError(
                    "When enable_large_batch_splitting is true, max_batch_size must be greater than or equal to "
                    f"max_execution_batch_size; was {self.max_batch_size} < {self.max_execution_batch_size}"
                )
        sizes = self.allowed_batch_sizes
        if not sizes:
            return
        if sizes[0] <= 0:
            raise UsageError(f"allowed_batch_sizes entries must be positive; first entry was {sizes[0]}")
        if any(later <= earlier for earlier, later in itertools.pairwise(sizes)):
            raise UsageError(
                f"allowed_batch_sizes entries must be monotonically increasing; got {', '.join(map(str, sizes))}"
            )
        if self.enable_large_batch_splitting:
            if sizes[-1] != self.max_execution_batch_size:
                raise UsageError(
                    "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last entry was "
                    f"{sizes[-1]}; expected {self.max_execution_batch_size}"
                )
        elif sizes[-1] != self.max_batch_size:
            raise UsageError(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{sizes[-1]}; expected {self.max_batch_size}"
            )

    def padded_size(self, rows: int) -> int:
        """The smallest allowed batch size holding ``rows`` (``rows`` itself without allowed sizes)."""
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows


def from_proto(params: BatchingParameters) -> BatchingOptions:
    """Options from a ``BatchingParameters`` message: set fields win, the others keep the defaults."""
    values: dict = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        if params.HasField(name):
            values[name] = getattr(params, name).value
    if params.HasField("thread_pool_name"):
        values["thread_pool_name"] = params.thread_pool_name.value
    if params.HasField("enable_large_batch_splitting"):
        values["enable_large_batch_splitting"] = params.enable_large_batch_splitting.value
    splitting = values.get("enable_large_batch_splitting", False)
    if params.HasField("max_execution_batch_size"):
        if splitting:
            values["max_execution_batch_size"] = params.max_execution_batch_size.value
        else:
            log.warning("max_execution_batch_size is ignored without enable_large_batch_splitting (as in TF Serving)")
    if values.get("max_enqueued_batches") == 0 and not splitting:
        # TF Serving's SharedBatchScheduler rewrites a zero-length queue to one batch in this case.
        values["max_enqueued_batches"] = 1
    values["allowed_batch_sizes"] = tuple(params.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = params.pad_variable_length_inputs
    return BatchingOptions(**values)


def parse_text(text: str, source: str = "<text>") -> BatchingOptions:
    """Options from text-format ``BatchingParameters``; errors name ``source``."""
    params = text_proto.parse(text, BatchingParameters, source)
    try:
        return from_proto(params)
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None


def load(path: str | os.PathLike) -> BatchingOptions:
    """Options from a ``--batching_parameters_file``."""
    return parse_text(text_proto.read_text(Path(path), "--batching_parameters_file"), str(path))


def resolve(enable_batching: bool, parameters_file: str | os.PathLike | None) -> BatchingOptions | None:
    """What ``--enable_batching`` and ``--batching_parameters_file`` ask for (None: batching off).

    As in TF Serving, batching without a file uses the defaults, and a file without
    ``--enable_batching`` is an error.
    """
    if not enable_batching:
        if parameters_file:
            raise UsageError("You supplied --batching_parameters_file without --enable_batching")
        return None
    if not parameters_file:
        return BatchingOptions()
    return load(parameters_file)
