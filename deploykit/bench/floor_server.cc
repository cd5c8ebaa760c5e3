// Copied from the project's shared tools (tools/floor/echo_server.cc); built by deploykit bench.
// Transport floor for the server side: a C++ gRPC server that answers
// /tensorflow.serving.PredictionService/Predict with a fixed, pre-serialized response of N bytes,
// through the async generic service (no protobuf parsing at all). Measures what a native front end
// such as TF Serving's costs on this machine, to compare with Python servers driven by the same client.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

int main(int argc, char** argv) {
  std::string addr = argc > 1 ? argv[1] : "127.0.0.1:8530";
  size_t size = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
  std::string payload(size, '\0');
  grpc::Slice slice(payload);
  grpc::ByteBuffer canned(&slice, 1);

  grpc::AsyncGenericService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(addr, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(INT32_MAX);
  builder.RegisterAsyncGenericService(&service);
  auto cq = builder.AddCompletionQueue();
  auto server = builder.BuildAndStart();
  std::cerr << "floor server on " << addr << " answering " << size << " bytes" << std::endl;

  struct Call {
    grpc::GenericServerContext ctx;
    grpc::GenericServerAsyncReaderWriter stream{&ctx};
    grpc::ByteBuffer request;
    int state = 0;  // 0 waiting for call, 1 read done, 2 write+finish done
  };
  auto fresh = [&]() {
    auto* c = new Call();
    service.RequestCall(&c->ctx, &c->stream, cq.get(), cq.get(), c);
  };
  fresh();
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
    auto* c = static_cast<Call*>(tag);
    if (!ok) { delete c; continue; }
    if (c->state == 0) {
      fresh();
      c->state = 1;
      c->stream.Read(&c->request, c);
    } else if (c->state == 1) {
      c->state = 2;
      c->stream.WriteAndFinish(canned, grpc::WriteOptions(), grpc::Status::OK, c);
    } else {
      delete c;
    }
  }
}
