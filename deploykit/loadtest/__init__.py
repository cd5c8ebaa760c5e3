"""``deploykit loadtest`` and ``deploykit compare``: trustworthy latency numbers against any
TF Serving API endpoint.

- :mod:`.target`: parse ``grpc://HOST:PORT/MODEL[/versions/N|/labels/L]`` and REST URLs.
- :mod:`.payload`: the request, built once and pre-serialised (random inputs from the model's
  metadata, an ``.npz``, or a request JSON file).
- :mod:`.worker`: one load-generating process: a grpc.aio/aiohttp event loop, open or closed loop,
  HDR histograms per measurement window.
- :mod:`.runner`: worker processes, sweeps, trials until stable, validity rules, merged results.
- :mod:`.gate`: thresholds and baseline regressions (the CI gate).
- reports (JSON, CSV, Markdown, HTML with plots, JUnit) live in :mod:`deploykit.report.loadtest`.

Nothing here imports TensorFlow or PyTorch.
"""
