"""Wire protocols, without TensorFlow: the only home of what travels between client and server.

- ``protos/``: wire-compatible message definitions under deploykit's own proto package
  (``deploykit.tfs``), generated with grpcio-tools; they coexist with TensorFlow's descriptors.
- :mod:`deploykit.protocol.wire`: metadata keys, message limits, the Server-Timing value.
- :mod:`deploykit.protocol.status_codes`: the one error <-> gRPC code <-> HTTP status table.
- :mod:`deploykit.protocol.codec`: the client's :class:`~deploykit.protocol.codec.Codec` interface
  (where a second protocol, e.g. the Open Inference Protocol, plugs in).
- :mod:`deploykit.protocol.tfserving_grpc`: TF Serving's gRPC messages, encoder and decoder per
  message (client and server sides) and the gRPC codec.
- :mod:`deploykit.protocol.tfserving_rest`: TF Serving's REST documents from the client's side and
  the REST codec; :mod:`deploykit.protocol.rest_json` reads and writes predict bodies on the server.
- :mod:`deploykit.protocol.tensor_codec`: numpy <-> ``TensorProto``.
- :mod:`deploykit.protocol.grpc_paths`: the official method paths and their message types.
- :mod:`deploykit.protocol.examples`: ``tf.Example`` inputs of Classify/Regress (REST JSON <-> protos).

Nothing here imports TensorFlow or PyTorch (DESIGN.md §3.2).
"""
