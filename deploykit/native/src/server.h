// The native gRPC data plane: a C++ server that owns the gRPC port and its threads.
//
// Every call arrives through gRPC's async generic service. Hot methods (TF Serving Predict; v2
// ModelInfer can join kHotMethods) are parsed and decoded here and handed to the Python dispatcher
// as numpy views; every other method (and any Predict the native decoder declines) is handed over as
// the raw request bytes, to be answered by the existing Python handlers. Python answers through
// Call::Finish / Call::FinishPredict, from any thread.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace dk {

namespace py = pybind11;

using Metadata = std::vector<std::pair<std::string, std::string>>;

class Server;

// One RPC. C++ holds it (`self`) until both its finish and its done notification completed;
// Python holds it while its handler runs.
class Call : public std::enable_shared_from_this<Call> {
 public:
  enum class Event { kRequested, kRead, kFinished, kDone };
  struct Tag {
    Event event;
    Call* call;
  };

  explicit Call(std::shared_ptr<Server> server) : server_(std::move(server)) {}

  // Answers with `status`; `payload` is the serialized response (used when status is OK).
  void Finish(const grpc::Status& status, std::string payload, const Metadata& trailing);
  // Seconds left before the caller's deadline, or a negative number when it set none.
  double TimeRemaining() const;
  const grpc::ByteBuffer& request() const { return request_; }
  grpc::GenericServerContext& context() { return context_; }
  uint64_t id() const { return id_; }

 private:
  friend class Server;
  void Proceed(Event event, bool ok);
  void ReleaseIfOver();

  std::shared_ptr<Server> server_;
  uint64_t id_ = 0;
  grpc::GenericServerContext context_;
  grpc::GenericServerAsyncReaderWriter stream_{&context_};
  grpc::ByteBuffer request_;
  Tag requested_{Event::kRequested, this}, read_{Event::kRead, this};
  Tag finished_{Event::kFinished, this}, done_{Event::kDone, this};
  std::shared_ptr<Call> self_;
  std::mutex mu_;
  bool finish_called_ = false, finish_over_ = false, done_over_ = false;
};

class Server : public std::enable_shared_from_this<Server> {
 public:
  // `dispatcher` implements predict(...), generic(...) and cancelled(call) (see native_dataplane.py);
  // `tensor_content_key`: request metadata asking for tensor_content outputs when its value is "1".
  // `max_tensor_bytes`: largest tensor Predict decodes natively; larger goes to the Python codec,
  // which refuses it with INVALID_ARGUMENT (nothing of that size is allocated on either side).
  Server(py::object dispatcher, std::string tensor_content_key, int64_t max_tensor_bytes);
  ~Server();

  void AddChannelArgument(const std::string& key, int value) { builder_.AddChannelArgument(key, value); }
  void AddChannelArgument(const std::string& key, const std::string& value) { builder_.AddChannelArgument(key, value); }
  // Listens on `address` (host:port, unix:path); returns an index for BoundPort.
  int AddPort(const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials);
  // The port bound for AddPort number `index`, known once Start returned (0: binding failed).
  int BoundPort(int index) const { return *ports_.at(index); }
  void Start(int threads);
  // Starts gRPC's shutdown without waiting: closes the listeners and sends GOAWAY on every
  // connection (gRPC C++ has no GOAWAY of its own). Calls already handed out go on; Shutdown ends it.
  void BeginShutdown();
  // Lets calls in flight finish for up to `grace` seconds, cancels the rest, stops the threads.
  // Blocks: call it without the GIL.
  void Shutdown(double grace);

 private:
  friend class Call;
  void RequestCall(grpc::ServerCompletionQueue* cq);
  void Dispatch(const std::shared_ptr<Call>& call);
  bool DispatchPredict(const std::shared_ptr<Call>& call);
  void DispatchGeneric(const std::shared_ptr<Call>& call);
  void Cancelled(const std::shared_ptr<Call>& call);
  void Poll(grpc::ServerCompletionQueue* cq);

  py::object dispatcher_;
  std::string tensor_content_key_;
  int64_t max_tensor_bytes_;
  grpc::ServerBuilder builder_;
  grpc::AsyncGenericService service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::unique_ptr<grpc::Server> server_;  // declared after queues_: destroyed before them
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<int>> ports_;
  std::atomic<uint64_t> next_id_{1};
  std::mutex mu_;       // guards closed_: no call may start an operation once the queues shut down
  bool closed_ = false;
  grpc_completion_queue* begun_ = nullptr;  // BeginShutdown's notification queue (C core API)
};

}  // namespace dk
