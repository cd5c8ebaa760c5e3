"""TFRecord files of ``PredictionLog`` records: TF Serving's ``assets.extra/tf_serving_warmup_requests``.

A TFRecord is a sequence of ``uint64 length | uint32 masked crc32c(length) | data | uint32 masked
crc32c(data)`` (little endian), as TensorFlow's ``tf.io.TFRecordWriter`` writes it; CRC-32C comes
from ``google-crc32c``, so neither reading nor writing imports TensorFlow.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c

from deploykit.errors import ValidationError
from deploykit.protocol import tensor_codec
from deploykit.protocol.protos import serving_pb2
from deploykit.tensors import Tensors

#: Where TF Serving looks for warm-up requests inside a version directory.
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
#: TF Serving replays at most this many warm-up records (``WarmupConsts::kMaxNumRecords``).
MAX_WARMUP_RECORDS = 1000


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_records(path: Path, records: Iterable[bytes]) -> None:
    """Write ``records`` as a TFRecord file (uncompressed)."""
    with open(path, "wb") as handle:
        for data in records:
            length = struct.pack("<Q", len(data))
            handle.write(length + struct.pack("<I", _masked_crc(length)))
            handle.write(data + struct.pack("<I", _masked_crc(data)))


def read_records(path: Path, limit: int = MAX_WARMUP_RECORDS) -> Iterator[bytes]:
    """The records of a TFRecord file, checksums verified; at most ``limit`` of them."""
    with open(path, "rb") as handle:
        for index in range(limit):
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12 or struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                raise ValidationError(f"{path}: record {index}: truncated or corrupt TFRecord length")
            (length,) = struct.unpack("<Q", header[:8])
            data, footer = handle.read(length), handle.read(4)
            if len(data) < length or len(footer) < 4 or struct.unpack("<I", footer)[0] != _masked_crc(data):
                raise ValidationError(f"{path}: record {index}: truncated or corrupt TFRecord data")
            yield data


def write_warmup_requests(path: Path, batches: Iterable[Tensors], signature_name: str = "serving_default") -> None:
    """Write one Predict request per batch of inputs as TF Serving's warm-up file (a TFRecord of
    ``PredictionLog``; TF Serving ignores the model name of warm-up requests, so none is set)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    requests = (
        serving_pb2.PredictRequest(
            model_spec=serving_pb2.ModelSpec(signature_name=signature_name),
            inputs={k: tensor_codec.from_ndarray(v, tensor_content=True) for k, v in inputs.items()},
        )
        for inputs in batches
    )
    logs = (serving_pb2.PredictionLog(predict_log=serving_pb2.PredictLog(request=r)) for r in requests)
    write_records(path, (log.SerializeToString() for log in logs))


def read_warmup_logs(path: Path) -> list[serving_pb2.PredictionLog]:
    """The ``PredictionLog`` records of a warm-up file (:class:`ValidationError` when malformed)."""
    logs = []
    for index, data in enumerate(read_records(path)):
        log = serving_pb2.PredictionLog()
        try:
            log.ParseFromString(data)
        except Exception as exc:  # protobuf's DecodeError
            raise ValidationError(f"{path}: record {index} is not a PredictionLog ({exc})") from None
        logs.append(log)
    return logs
