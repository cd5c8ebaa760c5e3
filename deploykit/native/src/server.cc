// See server.h.
#include "server.h"

#include <cstdio>

#include <chrono>
#include <cstring>

namespace dk {
namespace {

// Calls waiting for a client, so that a burst of new calls does not wait for a thread to post the
// next RequestCall.
constexpr int kPendingCalls = 32;

}  // namespace

// ------------------------------------------------------------------------------------------ Call

double Call::TimeRemaining() const {
  auto deadline = context_.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return -1;
  std::chrono::duration<double> left = deadline - std::chrono::system_clock::now();
  return left.count() > 0 ? left.count() : 0.0;
}

void Call::Proceed(Event event, bool ok) {
  switch (event) {
    case Event::kRequested:
      if (!ok) {  // the server is shutting down: the call never started, no done notification follows
        self_.reset();
        return;
      }
      server_->RequestCall(server_->queues_[0].get());
      {
        std::lock_guard<std::mutex> lock(server_->mu_);
        if (!server_->closed_) {
          stream_.Read(&request_, &read_);
          return;
        }
      }
      {  // shut down meanwhile: nothing to answer, only the done notification is still due
        std::lock_guard<std::mutex> lock(mu_);
        finish_called_ = finish_over_ = true;
      }
      break;
    case Event::kRead:
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INTERNAL, "the call carried no request message"), {}, {});
        return;
      }
      server_->Dispatch(shared_from_this());
      return;
    case Event::kFinished: {
      std::lock_guard<std::mutex> lock(mu_);
      finish_over_ = true;
      break;
    }
    case Event::kDone: {
      bool notify;
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_over_ = true;
        notify = context_.IsCancelled() && !finish_called_;
      }
      if (notify) server_->Cancelled(shared_from_this());  // deadline passed or client went away
      break;
    }
  }
  ReleaseIfOver();
}

void Call::ReleaseIfOver() {
  std::shared_ptr<Call> last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_over_ && done_over_) last = std::move(self_);
  }
}  // `last` may destroy this call here, outside the lock

void Call::Finish(const grpc::Status& status, std::string payload, const Metadata& trailing) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_called_) return;
    finish_called_ = true;
  }
  std::lock_guard<std::mutex> server_lock(server_->mu_);
  if (server_->closed_) {  // the queues are gone: nothing can be sent any more
    {
      std::lock_guard<std::mutex> lock(mu_);
      finish_over_ = true;
    }
    ReleaseIfOver();
    return;
  }
  for (const auto& [key, value] : trailing) context_.AddTrailingMetadata(key, value);
  if (!status.ok()) {
    stream_.Finish(status, &finished_);
    return;
  }
  auto* held = new std::string(std::move(payload));
  grpc::Slice slice(held->data(), held->size(), [](void* p) { delete static_cast<std::string*>(p); }, held);
  grpc::ByteBuffer response(&slice, 1);
  stream_.WriteAndFinish(response, grpc::WriteOptions(), status, &finished_);
}

// ---------------------------------------------------------------------------------------- Server

Server::Server(py::object dispatcher, std::string tensor_content_key, int64_t max_tensor_bytes)
    : dispatcher_(std::move(dispatcher)),
      tensor_content_key_(std::move(tensor_content_key)),
      max_tensor_bytes_(max_tensor_bytes) {
  builder_.RegisterAsyncGenericService(&service_);
}

Server::~Server() {
  for (auto& thread : threads_) thread.detach();  // only when never shut down (a bug): do not abort
  server_.reset();  // before its completion queues
  py::gil_scoped_acquire gil;  // the dispatcher is a Python object
  dispatcher_ = py::object();
}

int Server::AddPort(const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials) {
  ports_.push_back(std::make_unique<int>(0));
  builder_.AddListeningPort(address, std::move(credentials), ports_.back().get());
  return static_cast<int>(ports_.size()) - 1;
}

void Server::Start(int threads) {
  // One queue polled by every thread: a thread computing a Predict inline (native_inline.py) never
  // holds up calls waiting behind it on its own queue while other threads are idle.
  queues_.push_back(builder_.AddCompletionQueue());
  server_ = builder_.BuildAndStart();
  if (!server_) throw std::runtime_error("could not start the gRPC server (is the address in use or invalid?)");
  for (int i = 0; i < kPendingCalls; ++i) RequestCall(queues_[0].get());
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this, cq = queues_[0].get()] { Poll(cq); });
}

void Server::RequestCall(grpc::ServerCompletionQueue* cq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  auto call = std::make_shared<Call>(shared_from_this());
  call->id_ = next_id_.fetch_add(1);
  call->self_ = call;
  call->context_.AsyncNotifyWhenDone(&call->done_);
  service_.RequestCall(&call->context_, &call->stream_, cq, cq, &call->requested_);
}

void Server::Poll(grpc::ServerCompletionQueue* cq) {
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
    auto* t = static_cast<Call::Tag*>(tag);
    try {
      t->call->Proceed(t->event, ok);
    } catch (const std::exception& error) {
      // An exception leaving a gRPC thread would std::terminate the whole server (every client's
      // requests, not this one's): report it and keep polling. The call ends at its deadline.
      std::fprintf(stderr, "deploykit native data plane: call %llu failed: %s\n",
                   static_cast<unsigned long long>(t->call->id()), error.what());
    } catch (...) {
      std::fprintf(stderr, "deploykit native data plane: call %llu failed with a non-standard exception\n",
                   static_cast<unsigned long long>(t->call->id()));
    }
  }
}

void Server::Dispatch(const std::shared_ptr<Call>& call) {
  // Hot methods: decoded here; a request the native decoder declines goes the generic way.
  if (call->context().method() == "/tensorflow.serving.PredictionService/Predict" && DispatchPredict(call)) return;
  DispatchGeneric(call);
}

void Server::DispatchGeneric(const std::shared_ptr<Call>& call) {
  std::vector<grpc::Slice> slices;
  (void)call->request().Dump(&slices);
  size_t size = 0;
  for (const auto& s : slices) size += s.size();
  py::gil_scoped_acquire gil;
  try {
    py::bytes payload(nullptr, 0);
    PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size));
    if (raw == nullptr) throw py::error_already_set();
    payload = py::reinterpret_steal<py::bytes>(raw);
    char* out = PyBytes_AS_STRING(raw);
    for (const auto& s : slices) {
      std::memcpy(out, s.begin(), s.size());
      out += s.size();
    }
    py::list metadata;
    for (const auto& [key, value] : call->context().client_metadata()) {
      std::string k(key.data(), key.size());
      bool binary = k.size() > 4 && k.compare(k.size() - 4, 4, "-bin") == 0;
      py::object v = binary ? py::object(py::bytes(value.data(), value.size()))
                            : py::object(py::str(value.data(), value.size()));
      metadata.append(py::make_tuple(k, v));
    }
    double left = call->TimeRemaining();
    dispatcher_.attr("generic")(call, call->context().method(), payload, metadata,
                                left < 0 ? py::none() : py::object(py::float_(left)));
  } catch (py::error_already_set& error) {
    error.discard_as_unraisable("deploykit native data plane: dispatching a call");
    py::gil_scoped_release release;
    call->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "the server failed to dispatch the call"), {}, {});
  }
}

void Server::Cancelled(const std::shared_ptr<Call>& call) {
  py::gil_scoped_acquire gil;
  try {
    dispatcher_.attr("cancelled")(call);
  } catch (py::error_already_set& error) {
    error.discard_as_unraisable("deploykit native data plane: cancelling a call");
  }
}

void Server::BeginShutdown() {
  if (!server_ || begun_ != nullptr) return;
  // The C core's call: grpc::Server starts its shutdown only inside the blocking Shutdown. Calling it
  // twice is allowed (Shutdown below adds its own notification).
  begun_ = grpc_completion_queue_create_for_pluck(nullptr);
  grpc_server_shutdown_and_notify(server_->c_server(), begun_, this);
}

void Server::Shutdown(double grace) {
  if (server_) {
    auto deadline = std::chrono::system_clock::now() + std::chrono::microseconds(static_cast<int64_t>(grace * 1e6));
    server_->Shutdown(deadline);
  }
  if (begun_ != nullptr) {  // gRPC notified both shutdown requests when it finished: collect ours
    grpc_completion_queue_pluck(begun_, this, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr);
    grpc_completion_queue_shutdown(begun_);
    grpc_completion_queue_destroy(begun_);
    begun_ = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  for (auto& queue : queues_) queue->Shutdown();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

}  // namespace dk
