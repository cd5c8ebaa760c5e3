"""Real TensorFlow Serving: deployment writer and launcher for ``tensorflow_model_server``.

* :mod:`~deploykit.tfserving.config`: TF Serving's batching parameters and monitoring text protos
  (the model config, version policy and labels are :mod:`deploykit.server.model_config`'s, shared
  with deploykit's own server).
* :mod:`~deploykit.tfserving.commands`: the exact ``tensorflow_model_server`` and ``docker run``
  command lines, derived from :class:`~deploykit.serving.options.ServeOptions`.
* :mod:`~deploykit.tfserving.deployment`: ``deploykit tfserving-deploy``, a complete, self-contained
  TF Serving deployment of a model repository's SavedModels.
* :mod:`~deploykit.tfserving.launcher`: ``deploykit serve --engine tfserving|auto``, which runs the real
  server (binary or Docker), waits for it and stops it, or falls back to deploykit's own server;
  :mod:`~deploykit.tfserving.engine` chooses and prepares the engine (target, temporary deployment,
  option checks) and :mod:`~deploykit.serving.process` runs and watches the process.

Nothing here imports TensorFlow: it writes files and starts processes.
"""
