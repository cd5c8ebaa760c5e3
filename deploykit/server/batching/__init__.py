"""Dynamic batching, as TF Serving's ``--enable_batching``.

- :mod:`.options`: the batching parameters (``--batching_parameters_file``), read and validated;
- :mod:`.scheduler`: one batch queue and its rules for one (model version, signature);
- :mod:`.schedulers`: a server's set of schedulers and the batch threads they share.
"""
