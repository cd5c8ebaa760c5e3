"""Every report deploykit writes, in one place.

- :mod:`.loadtest`: load-test and comparison reports (JSON with encoded histograms, CSV, Markdown,
  HTML, JUnit).
- :mod:`.export`: export and validation reports (JSON, Markdown).
- :mod:`.pipeline`: the pipeline's verdict report (JSON, Markdown, HTML, JUnit).
- :mod:`.plots`: the plots (matplotlib, embedded as PNG: the HTML stays one self-contained file).
- :mod:`.html`: the HTML page every HTML report shares.

Markdown is written to fit a CI job summary; JSON carries ``schema_version``. Nothing here imports
TensorFlow or PyTorch.
"""

from __future__ import annotations

from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file renamed into place, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    staging.replace(path)
