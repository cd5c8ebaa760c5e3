"""End-to-end serving parity: every deploy path answers its version's golden inputs over the wire
with the golden outputs, within the tolerances recorded at export time (the same check as
``deploykit validate``, now through the server, its codec and the shared client)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.export.golden import load_golden
from deploykit.export.parity import OutputParity, compare
from deploykit.export.verify import recorded_tolerances
from deploykit.repository import GOLDEN, read_manifest


@dataclass(frozen=True)
class DeployPath:
    """One way a request reaches a model: an artifact behind a server, over one protocol."""

    artifact: str
    framework: str
    format: str
    protocol: str
    server: str
    endpoint: str
    version_dir: Path
    #: Set when another server also serves this artifact over this protocol (Triton beside deploykit
    #: serve), so that each path keeps a name of its own.
    via: str = ""

    @property
    def name(self) -> str:
        return f"{self.artifact} {self.protocol}" + (f" via {self.via}" if self.via else "")

    @property
    def target(self) -> str:
        """The load tester's target string (see :mod:`deploykit.loadtest.target`)."""
        if self.protocol.endswith("grpc"):
            return f"{self.endpoint}/{self.artifact}"
        return f"{self.endpoint}/{'v2' if self.protocol.startswith('v2-') else 'v1'}/models/{self.artifact}"


def predict(path: DeployPath, inputs: dict) -> dict:
    """One request through the shared client (the seam a test uses to fake a wrong answer)."""
    from deploykit.client import Client

    with Client(path.endpoint, timeout=60) as client:
        return client.predict(path.artifact, inputs)


def check(path: DeployPath) -> list[dict]:
    """Rows of the parity table for one path: one per golden batch size and output."""
    manifest = read_manifest(path.version_dir)
    tolerances = recorded_tolerances(manifest)
    rows = []
    for batch, (inputs, expected) in sorted(load_golden(path.version_dir / GOLDEN).items()):
        found: list[OutputParity | None]
        try:
            found = list(compare(expected, predict(path, inputs), batch, tolerances))
        except Exception as exc:  # an error answer is a parity failure of this path, not a crash
            found = [None]  # one failed row, with the error
            error = f"{type(exc).__name__}: {exc}"
        for row in found:
            entry = {"path": path.name, "artifact": path.artifact, "protocol": path.protocol, "batch_size": batch}
            entry |= row.to_dict() if row else {"output": "-", "passed": False, "problem": error}
            rows.append(entry)
    return rows


def describe_failures(rows: list[dict]) -> list[str]:
    """One line per failed row: path, output and the error."""
    lines = []
    for r in rows:
        if r["passed"]:
            continue
        what = r.get("problem") or (
            f"max abs error {r['max_abs']:.3g} > atol {r['atol']:g} + rtol {r['rtol']:g}*|golden| "
            f"(needed atol {r['needed_atol']:.3g})"
        )
        lines.append(f"{r['path']}: output {r['output']} at batch {r['batch_size']}: {what}")
    return lines
