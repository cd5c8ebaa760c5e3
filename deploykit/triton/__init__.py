"""NVIDIA Triton as a deploy target: model repositories written from deploykit's manifests
(:mod:`deploykit.triton.repository`), their command lines (:mod:`deploykit.triton.commands`) and
a launcher for the real ``tritonserver`` (:mod:`deploykit.triton.launcher`)."""
