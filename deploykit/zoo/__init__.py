"""Twin model zoo: each architecture described once, built in PyTorch and in Keras 3.

- :mod:`deploykit.zoo.spec` describes the architectures and how their weights correspond
  (no framework imports).
- :mod:`deploykit.zoo.torch_models` and :mod:`deploykit.zoo.keras_models` build them.
- :mod:`deploykit.zoo.transfer` copies weights between twins by the explicit per-tensor map.
"""

from deploykit.zoo.spec import ARCHITECTURES, ArchSpec, make_spec

__all__ = ["ARCHITECTURES", "ArchSpec", "make_spec"]
