"""deploykit: train twin PyTorch/TensorFlow models, export every format, prove parity, serve, load-test.

Importing this package is cheap: it imports neither PyTorch nor TensorFlow. Heavy frameworks are
imported lazily by the modules that need them (``deploykit.zoo.torch_models``,
``deploykit.zoo.keras_models``, ``deploykit.train``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
