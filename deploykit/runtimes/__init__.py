"""Runtimes: loaded model artifacts that map named numpy tensors to named numpy tensors.

Only :mod:`deploykit.runtimes.providers` exists so far (ONNX Runtime execution-provider probing).
"""
