// The hot method TF Serving Predict: the request decoded into numpy views for the Python
// dispatcher, the response encoded here (see server.h).
#include "predict.h"

#include <grpcpp/impl/codegen/proto_utils.h>

#include <chrono>
#include <optional>

#include "deploykit/protocol/protos/serving.pb.h"
#include "server.h"
#include "tensors.h"

namespace dk {
namespace {

using Clock = std::chrono::steady_clock;

// Answers above this size are encoded and sent with the GIL released.
constexpr size_t kReleaseGilBytes = 64 * 1024;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The last value of request metadata `key` (as Python's dict(invocation_metadata()) sees it).
std::string LastValue(const grpc::GenericServerContext& context, const std::string& key) {
  std::string found;
  for (const auto& [k, v] : context.client_metadata())
    if (k == key) found.assign(v.data(), v.size());
  return found;
}

}  // namespace

bool Server::DispatchPredict(const std::shared_ptr<Call>& call) {
  auto started = Clock::now();
  auto request = std::make_shared<deploykit::tfs::PredictRequest>();
  grpc::ByteBuffer shared(call->request());  // shares the slices: the original stays for the generic path
  if (!grpc::SerializationTraits<deploykit::tfs::PredictRequest>::Deserialize(&shared, request.get()).ok()) {
    return false;  // malformed: the Python handler answers with its own message
  }
  std::vector<std::pair<const std::string*, DecodedTensor>> inputs;
  for (const auto& [name, proto] : request->inputs()) {
    auto tensor = Decode(proto, max_tensor_bytes_);
    if (!tensor) return false;
    inputs.emplace_back(&name, std::move(*tensor));
  }
  bool as_content = LastValue(call->context(), tensor_content_key_) == "1";
  double left = call->TimeRemaining();

  {
    py::gil_scoped_acquire gil;
    try {
      std::shared_ptr<const void> owner = request;
      py::dict arrays;
      for (const auto& [name, tensor] : inputs) arrays[py::str(*name)] = ToNumpy(tensor, owner);
      // The ModelSpec and output filter as plain values: the Python side parses no protobuf.
      py::object spec = py::none();
      if (request->has_model_spec()) {
        const auto& s = request->model_spec();
        using Spec = deploykit::tfs::ModelSpec;
        py::object version = s.version_choice_case() == Spec::kVersion ? py::object(py::int_(s.version().value()))
                                                                        : py::object(py::none());
        py::object label = s.version_choice_case() == Spec::kVersionLabel ? py::object(py::str(s.version_label()))
                                                                           : py::object(py::none());
        spec = py::make_tuple(s.name(), version, label, s.signature_name());
      }
      py::list output_filter;
      for (const auto& name : request->output_filter()) output_filter.append(py::str(name));
      // An answer given while Python runs on this thread is sent once the GIL is released (below).
      call->BeginDispatch();
      dispatcher_.attr("predict")(call, spec, output_filter, arrays, as_content,
                                  left < 0 ? py::none() : py::object(py::float_(left)), SecondsSince(started));
    } catch (py::error_already_set& error) {
      error.discard_as_unraisable("deploykit native data plane: dispatching Predict");
      call->EndDispatch();
      py::gil_scoped_release release;
      call->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "the server failed to dispatch Predict"), {}, {});
      return true;
    }
  }
  call->EndDispatch();  // without the GIL: sends the answer Python gave meanwhile, if any
  return true;
}

bool FinishPredict(Call& call, const std::string& name, int64_t version, const std::string& signature_name,
                   const py::dict& outputs, bool tensor_content, const py::object& trailers) {
  std::vector<py::array> keep;  // the arrays stay referenced while encoding runs without the GIL
  std::vector<OutputView> views;
  for (const auto& [key, value] : outputs) {
    if (!py::isinstance<py::array>(value)) return false;
    auto array = py::reinterpret_borrow<py::array>(value);
    auto view = ViewOutput(py::cast<std::string>(key), array);
    if (!view) return false;
    keep.push_back(std::move(array));
    views.push_back(std::move(*view));
  }
  // Handing the GIL over costs more than encoding a small answer when threads queue for it
  // (profile in BENCHMARKS.md): only large answers are encoded and sent without it.
  size_t total = 0;
  for (const auto& view : views) total += view.nbytes;
  std::optional<py::gil_scoped_release> release;
  if (total > kReleaseGilBytes) release.emplace();
  std::string payload;
  auto started = Clock::now();
  deploykit::tfs::PredictResponse response;
  auto* spec = response.mutable_model_spec();
  spec->set_name(name);
  spec->mutable_version()->set_value(version);
  spec->set_signature_name(signature_name);
  for (const auto& view : views) Encode(view, tensor_content, &(*response.mutable_outputs())[view.name]);
  response.SerializeToString(&payload);
  double encode_s = SecondsSince(started);
  release.reset();
  Metadata trailing;
  for (const auto& item : trailers(encode_s)) {
    auto pair = item.cast<py::tuple>();
    trailing.emplace_back(pair[0].cast<std::string>(), pair[1].cast<std::string>());
  }
  if (total > kReleaseGilBytes) release.emplace();
  call.Finish(grpc::Status::OK, std::move(payload), trailing);
  return true;
}

}  // namespace dk
