"""deploykit's TF-Serving-compatible server: one inference core, gRPC and REST front ends.

Importing this package imports neither TensorFlow nor PyTorch; a runtime imports its framework
only when a model of that format is loaded.
"""

from deploykit.server.server import Server, ServerConfig, ServerThread

__all__ = ["Server", "ServerConfig", "ServerThread"]
