"""The load-test API: ``loadtest`` and ``compare`` end to end (check the target, build the payload,
run, gate, report)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deploykit.client import Client
from deploykit.errors import ServingError, Unimplemented, UsageError
from deploykit.loadtest import gate, reach, stats
from deploykit.loadtest.payload import Payload, build, load_inputs
from deploykit.loadtest.runner import LevelResult, Runner, RunSettings
from deploykit.loadtest.target import LoadTarget
from deploykit.protocol.codec import raw
from deploykit.protocol.v2_codecs import V2GrpcCodec, V2RestCodec
from deploykit.protocol.wire import ENGINE_KEY
from deploykit.report import loadtest as report
from deploykit.tensors import Tensors

UNKNOWN_ENGINE = "not self-reported (TensorFlow Serving or another server that does not name itself)"


def probe(target: LoadTarget, payload: Payload, timeout: float = 30.0) -> str:
    """Send the payload once, through the shared client: proves it is accepted and learns which
    engine serves.

    Raises :class:`Unreachable` (exit 3) when the target does not answer and :class:`UsageError`
    (exit 2) when it rejects the payload, before any load is generated.
    """
    with Client(target.client_target, timeout=timeout, tls=target.tls) as client:
        try:
            _, metadata = client.send(raw(payload.path, payload.body, payload.metadata))
        except ServingError as exc:
            raise UsageError(f"{target} rejected the payload: {type(exc).__name__}: {exc}") from None
        if ENGINE_KEY in metadata:
            return metadata[ENGINE_KEY]
        if target.protocol == "v2":  # Triton, KServe, MLServer name themselves in ServerMetadata
            return v2_engine(client)
    return UNKNOWN_ENGINE


def v2_engine(client: Client) -> str:
    """A v2 server's name and version from its ServerMetadata (e.g. ``triton 2.61.0``)."""
    codec = client.codec
    # called for v2 targets only, whose codecs (unlike TF Serving's) have ServerMetadata
    assert isinstance(codec, V2GrpcCodec | V2RestCodec)
    try:
        found, _ = client.send(codec.server_metadata())
    except ServingError as exc:
        return f"not self-reported (v2 server metadata unavailable: {exc})"
    return f"{found['name']} {found['version']} (v2 server metadata)".strip()


def prepare(
    target: LoadTarget,
    *,
    npz: Path | None,
    request_json: Path | None,
    batch_size: int,
    seed: int,
    inputs: Tensors | None = None,
    timeout: float = 30.0,
    wait_ready: float = 0.0,
    notes: list[str] | None = None,
) -> tuple[Payload, Tensors | None, str]:
    """Check the target is there, wait for the model, build and probe the payload.
    Returns (payload, inputs, engine); what was skipped is appended to ``notes``.

    With a payload given (``npz``, ``request_json`` or ``inputs``) only ``Predict`` is used, so
    Predict-only endpoints (gateways, custom servers) can be load-tested.
    """
    reach.check(target, wait_ready)  # a refused port or a failed TLS handshake: exit 3 now
    if inputs is None and request_json is None and npz is None:
        inputs = _inputs_from_metadata(target, batch_size, seed, max(timeout, wait_ready), notes)
    elif npz is not None and inputs is None:
        inputs = load_inputs(target, None, npz=npz, batch_size=batch_size, seed=seed)
    payload = build(target, inputs, request_json)
    return payload, inputs, probe(target, payload, timeout)


def _inputs_from_metadata(
    target: LoadTarget, batch_size: int, seed: int, timeout: float, notes: list[str] | None
) -> Tensors:
    """Random inputs from the model's metadata, once the model is ready (when the endpoint reports it)."""
    try:
        with Client(target.client_target, timeout=timeout, tls=target.tls) as client:
            try:
                client.status(target.model)  # reachable (UNAVAILABLE retried until the timeout) and known
                client.wait_until_ready(target.model, timeout=timeout)
            except Unimplemented:
                if notes is not None:
                    notes.append(f"{target} does not implement GetModelStatus: readiness check skipped")
            try:
                return load_inputs(target, client, npz=None, batch_size=batch_size, seed=seed)
            except Unimplemented:
                raise UsageError(
                    f"{target} does not implement GetModelMetadata, so inputs cannot be generated from it: "
                    "give them with --npz (or --request-json for REST)"
                ) from None
    except ServingError as exc:
        raise UsageError(f"{target}: {exc}") from exc


@dataclass
class GateSpec:
    """Thresholds and baseline regressions, parsed (and the baseline read) before any load."""

    thresholds: list[gate.Threshold]
    baseline: dict | None
    limits: dict[str, float]

    @classmethod
    def parse(cls, thresholds, baseline: Path | None, max_regression) -> GateSpec:
        parsed = [gate.parse_threshold(t) for t in thresholds]
        if baseline is None:
            if max_regression:
                raise UsageError("--max-regression needs --baseline")
            return cls(parsed, None, {})
        try:
            document = json.loads(baseline.read_text())
            document["levels"]  # noqa: B018  (a report, not any JSON)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--baseline {baseline}: not a deploykit report ({exc})") from None
        limits = dict(gate.parse_regression(r) for r in max_regression) or {"p99": 0.10}
        return cls(parsed, document, limits)

    def evaluate(self, results: list[LevelResult]) -> list[dict]:
        found = [t.evaluate(r) for r in results for t in self.thresholds]
        if self.baseline is not None:
            found += gate.regressions(results, self.baseline, self.limits)
        return [c.to_dict() for c in found]


def loadtest(
    target: LoadTarget,
    settings: RunSettings,
    *,
    npz: Path | None = None,
    request_json: Path | None = None,
    batch_size: int = 1,
    thresholds: Sequence[str] = (),
    baseline: Path | None = None,
    max_regression: Sequence[str] = (),
    progress=None,
) -> dict:
    """Run every level of ``settings`` against ``target``; the report dict (see :mod:`.report`)."""
    settings.check()
    gate_spec = GateSpec.parse(thresholds, baseline, max_regression)  # usage errors before any load
    notes: list[str] = []
    payload, _, engine = prepare(
        target,
        npz=npz,
        request_json=request_json,
        batch_size=batch_size,
        seed=settings.seed,
        timeout=settings.timeout_s,
        wait_ready=settings.wait_ready_s,
        notes=notes,
    )
    with Runner(settings) as runner:
        results = runner.run(payload, target, progress)
    found = gate_spec.evaluate(results)
    levels = [{**r.to_dict(), "target": str(target)} for r in results]
    return report.build(str(target), engine, payload.description, asdict(settings), levels, found, notes=notes)


def compare(
    targets: list[LoadTarget],
    settings: RunSettings,
    *,
    rounds: int = 3,
    npz: Path | None = None,
    batch_size: int = 1,
    thresholds: Sequence[str] = (),
    progress=None,
    trial_done=None,
) -> dict:
    """The same payload against every target, interleaved (A B C A B C ...) so drift hits all alike."""
    settings.check()
    if len(targets) < 2:
        raise UsageError("compare needs at least two targets")
    if len(settings.levels) != 1:
        raise UsageError("compare runs one level: give one --concurrency or one --rate value")
    if rounds < 1:
        raise UsageError("--rounds must be positive")
    parsed = [gate.parse_threshold(t) for t in thresholds]
    inputs = None
    prepared = []
    notes: list[str] = []
    for target in targets:  # same inputs for every target (the first target's metadata decides them)
        payload, inputs, engine = prepare(
            target,
            npz=npz,
            request_json=None,
            batch_size=batch_size,
            seed=settings.seed,
            inputs=inputs,
            timeout=settings.timeout_s,
            wait_ready=settings.wait_ready_s,
            notes=notes,
        )
        prepared.append((target, payload, engine))
    per_target: dict[str, list[LevelResult]] = {str(t): [] for t in targets}
    with Runner(settings) as runner:
        for round_index in range(rounds):
            for target, payload, _ in prepared:
                if progress:
                    progress(str(target), round_index)
                per_target[str(target)].append(runner.run_level(payload, target, settings.levels[0], trial_done))
    levels = [_combine(name, results) for name, results in per_target.items()]
    fastest = min(lv["latency_ms"]["p50"] or float("inf") for lv in levels)
    best_rps = max(lv["achieved_rps"] for lv in levels)
    for lv in levels:
        lv["ratio_p50_to_fastest"] = round(lv["latency_ms"]["p50"] / fastest, 3) if lv["latency_ms"]["p50"] else None
        lv["ratio_rps_to_best"] = round(lv["achieved_rps"] / best_rps, 3) if best_rps else None
    found = [t.evaluate(lv, lv["target"]).to_dict() for lv in levels for t in parsed]
    engines = "; ".join(f"{t}: {e}" for t, _, e in prepared)
    report_dict = report.build(
        ", ".join(str(t) for t in targets),
        engines,
        prepared[0][1].description,
        asdict(settings),
        levels,
        found,
        kind="compare",
        notes=notes,
    )
    report_dict["rounds"] = rounds
    return report_dict


def _combine(name: str, results: list[LevelResult]) -> dict:
    """One target's rounds merged: exact merged histograms, and 95% CIs over all windows of all rounds."""
    latency = stats.merge([stats.from_blob(r.histograms["latency"]).encode() for r in results])
    service = stats.merge([stats.from_blob(r.histograms["service_time"]).encode() for r in results])
    lag = stats.merge([stats.from_blob(r.histograms["send_lag"]).encode() for r in results])
    windows = [w for r in results for w in r.windows if w["mean_ms"] is not None]
    p50_mean, p50_ci = stats.mean_ci95([w["p50_ms"] for w in windows])
    rps_mean, rps_ci = stats.mean_ci95([w["rps"] for w in windows])
    count = {k: sum(r.count[k] for r in results) for k in ("ok", "error", "dropped")}
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r.status_codes.items():
            codes[code] = codes.get(code, 0) + n
    measured = sum(r.measured_s for r in results)
    first = results[0]
    return {
        "target": name,
        "mode": first.mode,
        "level": first.level,
        "target_rps": first.target_rps,
        "achieved_rps": round((count["ok"] + count["error"]) / measured, 3) if measured else 0.0,
        "count": count,
        "status_codes": codes,
        "latency_ms": stats.summary_ms(latency),
        "service_time_ms": stats.summary_ms(service),
        "send_lag_ms": stats.summary_ms(lag),
        "windows": [w for r in results for w in r.windows],
        "stable": all(r.stable is not False for r in results),
        "valid": all(r.valid for r in results),
        "invalid_reasons": [f"round {i + 1}: {m}" for i, r in enumerate(results) for m in r.invalid_reasons],
        "trials": sum(r.trials for r in results),
        "client_cpu": max(r.client_cpu for r in results),
        "measured_s": round(measured, 3),
        "rounds": len(results),
        "window_p50_ms_ci95": [_rounded(p50_mean, 4), _rounded(p50_ci, 4)],
        "window_rps_ci95": [_rounded(rps_mean, 3), _rounded(rps_ci, 3)],
        "histograms": {
            "latency": stats.blob(latency),
            "service_time": stats.blob(service),
            "send_lag": stats.blob(lag),
        },
        "spectrum_ms": stats.spectrum_ms(latency),
        "breakdown_ms": _combined_breakdown(results),
        "error_rate": count["error"] / max(count["ok"] + count["error"], 1),
    }


def _combined_breakdown(results: list[LevelResult]) -> dict[str, dict[str, float | None]]:
    """Rounds' server-timing splits merged. Their histograms are not kept per round, so each part is
    the mean of the rounds' summaries (rounds have equal duration)."""
    parts = {part for r in results for part in r.breakdown_ms}
    combined: dict[str, dict[str, float | None]] = {}
    for part in sorted(parts):
        summaries = [r.breakdown_ms[part] for r in results if part in r.breakdown_ms]
        combined[part] = {}
        for key in summaries[0]:
            values = [s[key] for s in summaries]
            present = [v for v in values if v is not None]
            combined[part][key] = round(sum(present) / len(values), 4) if len(present) == len(values) else None
    return combined


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
