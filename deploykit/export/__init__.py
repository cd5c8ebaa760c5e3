"""Export models to TorchScript, ``.pt2``, SavedModel and ONNX, each proven equal to its source.

Entry points: :func:`deploykit.export.run.export` (sources -> validated, versioned artifacts) and
:func:`deploykit.export.verify.verify` (re-check a published version without its source).
"""
