"""The Python transport floor: a grpc.aio server answering Predict with a canned response, parsing nothing.

``python -m deploykit.bench.pyfloor HOST:PORT RESPONSE_BYTES``: the same job as the native floor
(``floor_server.cc``), to measure what grpc.aio itself costs next to C++ gRPC.
"""

from __future__ import annotations

import asyncio
import sys

import grpc


async def serve(address: str, size: int) -> None:
    canned = b"\0" * size

    async def predict(request: bytes, context) -> bytes:
        return canned

    handler = grpc.unary_unary_rpc_method_handler(predict)  # raw bytes both ways
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**31 - 1)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {"Predict": handler})]
    )
    server.add_insecure_port(address)
    await server.start()
    print(f"python floor on {address} answering {size} bytes", file=sys.stderr, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
