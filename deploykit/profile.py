"""``deploykit profile``: where one exported model spends its time, operator by operator.

Each format is profiled with its own framework's profiler, on the runtime that serves it:

- ONNX: ONNX Runtime's profiler (``enable_profiling``), ``*_kernel_time`` node events summed by
  operator type (best-deploy-paths.md §2.5), with the session options deploykit serves with;
- TorchScript, ``.pt2``, AOTInductor: ``torch.profiler`` self CPU time by operator (an AOTInductor
  package shows as a few fused kernels, or one opaque call);
- SavedModel: TensorFlow's profiler, the op events of its XPlane trace summed by op type.

Warm-up calls run first and are not counted. Layout transposes (``Transpose``, ``aten::permute``,
``aten::contiguous``...) are reported apart: converters insert them between NHWC and NCHW.
"""

from __future__ import annotations

import glob
import json
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import UsageError
from deploykit.tensors import Signature, Tensors, random_inputs

MANIFEST = "deploykit.json"
#: Operator names that only move data between layouts.
LAYOUT_OPS = re.compile(r"^(Transpose|aten::permute|aten::transpose|aten::contiguous|aten::clone|aten::copy_)$")


@dataclass
class OpTime:
    """One operator type: time per profiled run and calls per run."""

    op: str
    ms_per_run: float
    calls_per_run: float
    share: float = 0.0


@dataclass
class Profile:
    """The profile of one model version at one batch size."""

    model: str
    version: int
    format: str
    profiler: str
    batch_size: int
    runs: int
    wall_ms_per_run: float
    ops: list[OpTime] = field(default_factory=list)
    layout_ms_per_run: float = 0.0
    layout_calls_per_run: float = 0.0
    threads: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def top(self, n: int) -> list[OpTime]:
        return self.ops[:n]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(target: Path) -> tuple[str, int, Path]:
    """(model name, version, version directory) of ``REPO/MODEL`` (latest version) or ``REPO/MODEL/VERSION``."""
    target = Path(target)
    if target.name.isdigit() and (target / MANIFEST).is_file():
        return target.parent.name, int(target.name), target
    versions = sorted(int(p.name) for p in target.glob("*") if p.is_dir() and re.fullmatch(r"[0-9]+", p.name))
    if not versions:
        raise UsageError(f"{target}: expected a model directory REPO/MODEL with version directories, or REPO/MODEL/N")
    version_dir = target / str(versions[-1])
    if not (version_dir / MANIFEST).is_file():
        raise UsageError(f"{version_dir}: no {MANIFEST}; profile needs a deploykit export")
    return target.name, versions[-1], version_dir


def _finish(profile: Profile, totals: dict[str, float], calls: dict[str, int], runs: int) -> Profile:
    """Per-run operator times, sorted, with shares of the operator total, and the layout ops apart."""
    total = sum(totals.values()) or 1.0
    profile.ops = sorted(
        (OpTime(op, us / runs / 1000, calls[op] / runs, us / total) for op, us in totals.items()),
        key=lambda o: -o.ms_per_run,
    )
    layout = [o for o in profile.ops if LAYOUT_OPS.match(o.op)]
    profile.layout_ms_per_run = sum(o.ms_per_run for o in layout)
    profile.layout_calls_per_run = sum(o.calls_per_run for o in layout)
    return profile


def _timed(call, inputs: Tensors, runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        call(inputs)
    return (time.perf_counter() - started) * 1000 / runs


def _profile_onnx(
    profile: Profile, artifact: Path, signature: Signature, inputs: Tensors, runs: int, warmup: int, tuning: str | None
):
    import onnxruntime as ort

    from deploykit.quiet import native_output_captured
    from deploykit.runtimes import ort_tuning
    from deploykit.runtimes.providers import working_providers

    settings = ort_tuning.choose(artifact, list(working_providers()), signature, tuning=tuning, cache=False)
    options = ort_tuning.session_options(settings)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        with native_output_captured():
            session = ort.InferenceSession(
                str(artifact), options, providers=[p for p, _ in settings.providers],
                provider_options=[o for _, o in settings.providers],
            )  # fmt: skip
        run = lambda feed: session.run(None, feed)  # noqa: E731
        for _ in range(warmup):
            run(inputs)
        profile.wall_ms_per_run = _timed(run, inputs, runs)
        events = json.loads(Path(session.end_profiling()).read_text())
    run_starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    counted_from = run_starts[warmup] if len(run_starts) > warmup else 0
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= counted_from:
            op = event.get("args", {}).get("op_name", "?")
            totals[op] += event["dur"]
            calls[op] += 1
    profile.threads = {
        k: settings.describe()[k]
        for k in ("tuning", "intra_op_num_threads", "inter_op_num_threads", "execution_mode", "allow_spinning")
    }
    profile.threads["providers"] = session.get_providers()
    return _finish(profile, totals, calls, runs)


def _profile_torch(
    profile: Profile, fmt: str, artifact: Path, signature: Signature, inputs: Tensors, runs: int, warmup: int
):
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from deploykit.runtimes import load_runtime

    runtime = load_runtime(fmt, artifact, signature)
    for _ in range(warmup):
        runtime.predict(inputs)
    profile.wall_ms_per_run = _timed(runtime.predict, inputs, runs)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            runtime.predict(inputs)
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for avg in prof.key_averages():
        if avg.self_cpu_time_total > 0:
            totals[avg.key] += avg.self_cpu_time_total
            calls[avg.key] += avg.count
    profile.threads = {"torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
    if fmt == "aoti":
        profile.notes.append("AOTInductor runs compiled kernels: the profiler sees fused calls, not ATen operators")
    runtime.close()
    return _finish(profile, totals, calls, runs)


def _profile_savedmodel(profile: Profile, artifact: Path, inputs: Tensors, runs: int, warmup: int):
    import tensorflow as tf

    from deploykit.runtimes.tensorflow import SavedModelRuntime

    try:
        from tsl.profiler.protobuf import xplane_pb2
    except ImportError:  # older TensorFlow layouts
        from tensorflow.tsl.profiler.protobuf import xplane_pb2

    runtime = SavedModelRuntime(artifact)
    for _ in range(warmup):
        runtime.predict(inputs)
    profile.wall_ms_per_run = _timed(runtime.predict, inputs, runs)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(runs):
            runtime.predict(inputs)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb"))[-1]).read_bytes())
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                if ":" in meta.name and meta.display_name:  # "scope/node:OpType" events are TF ops
                    totals[meta.display_name] += event.duration_ps / 1e6
                    calls[meta.display_name] += 1
    profile.threads = runtime.describe().get("threads", {})
    if runtime.describe().get("xla_jit_compile"):
        profile.notes.append("XLA-compiled: TensorFlow's trace shows the XLA cluster, not the fused HLO ops")
    runtime.close()
    return _finish(profile, totals, calls, runs)


def profile(
    target: Path, batch_size: int = 1, runs: int = 20, warmup: int = 5, seed: int = 0, tuning: str | None = None
) -> Profile:
    """Profile the version at ``target`` (``REPO/MODEL`` or ``REPO/MODEL/VERSION``) at ``batch_size``."""
    if batch_size < 1 or runs < 1 or warmup < 0:
        raise UsageError(f"need batch size >= 1, runs >= 1, warmup >= 0; got {batch_size}, {runs}, {warmup}")
    name, version, version_dir = resolve(target)
    manifest = json.loads((version_dir / MANIFEST).read_text())
    fmt, artifact = manifest["format"], version_dir / manifest["artifact"]
    signature = Signature.from_dict(manifest["signature"])
    inputs = random_inputs(signature, batch_size, seed)
    profilers = {"onnx": "onnxruntime profiler", "savedmodel": "tensorflow profiler (XPlane)"}
    result = Profile(name, version, fmt, profilers.get(fmt, "torch.profiler"), batch_size, runs, 0.0)
    if fmt == "onnx":
        return _profile_onnx(result, artifact, signature, inputs, runs, warmup, tuning)
    if fmt == "savedmodel":
        return _profile_savedmodel(result, artifact, inputs, runs, warmup)
    if fmt in ("torchscript", "pt2", "aoti"):
        return _profile_torch(result, fmt, artifact, signature, inputs, runs, warmup)
    raise UsageError(f"{version_dir}: cannot profile format {fmt!r}")
