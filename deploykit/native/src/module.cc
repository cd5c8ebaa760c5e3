// Python bindings of the native data plane: deploykit.native._dataplane.
#include <pybind11/stl.h>

#include "predict.h"
#include "server.h"

namespace py = pybind11;

namespace {

dk::Metadata ToMetadata(const py::iterable& items) {
  dk::Metadata metadata;
  for (const auto& item : items) {
    auto pair = item.cast<py::tuple>();
    metadata.emplace_back(pair[0].cast<std::string>(), pair[1].cast<std::string>());  // str or bytes
  }
  return metadata;
}

std::shared_ptr<grpc::ServerCredentials> Credentials(const std::optional<std::string>& key,
                                                     const std::optional<std::string>& cert,
                                                     const std::optional<std::string>& client_ca) {
  if (!key || !cert) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(client_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (client_ca) options.pem_root_certs = *client_ca;
  return grpc::SslServerCredentials(options);
}

}  // namespace

PYBIND11_MODULE(_dataplane, m) {
  m.doc() = "deploykit's native gRPC data plane (see deploykit/server/native_dataplane.py)";

  py::class_<dk::Call, std::shared_ptr<dk::Call>>(m, "Call")
      .def_property_readonly("id", &dk::Call::id)
      .def(
          "finish",
          [](dk::Call& call, int code, const std::string& message, const std::optional<std::string>& payload,
             const py::iterable& trailing) {
            auto metadata = ToMetadata(trailing);
            std::string body = payload.value_or(std::string());
            std::optional<py::gil_scoped_release> release;  // issuing a small answer is quicker than a GIL handover
            if (body.size() > 64 * 1024) release.emplace();
            call.Finish(grpc::Status(static_cast<grpc::StatusCode>(code), message), std::move(body), metadata);
          },
          py::arg("code"), py::arg("message"), py::arg("payload"), py::arg("trailing"),
          "Answer with a gRPC status code and, when it is OK (0), the serialized response.")
      .def("finish_predict", &dk::FinishPredict, py::arg("name"), py::arg("version"), py::arg("signature_name"),
           py::arg("outputs"), py::arg("tensor_content"), py::arg("trailers"),
           "Encode a PredictResponse natively and answer with it; False if an output needs the Python codec.");

  py::class_<dk::Server, std::shared_ptr<dk::Server>>(m, "Server")
      .def(py::init<py::object, std::string, int64_t>(), py::arg("dispatcher"), py::arg("tensor_content_key"),
           py::arg("max_tensor_bytes"))
      .def("add_channel_argument", py::overload_cast<const std::string&, int>(&dk::Server::AddChannelArgument))
      .def("add_channel_argument",
           py::overload_cast<const std::string&, const std::string&>(&dk::Server::AddChannelArgument))
      .def(
          "add_port",
          [](dk::Server& server, const std::string& address, std::optional<std::string> key,
             std::optional<std::string> cert, std::optional<std::string> client_ca) {
            return server.AddPort(address, Credentials(key, cert, client_ca));
          },
          py::arg("address"), py::arg("key") = py::none(), py::arg("cert") = py::none(),
          py::arg("client_ca") = py::none(), "Listen on address (TLS when key and cert are given); returns its index.")
      .def("bound_port", &dk::Server::BoundPort, "The port bound by add_port number `index` (after start).")
      .def("start", &dk::Server::Start, py::arg("threads"), py::call_guard<py::gil_scoped_release>())
      .def("begin_shutdown", &dk::Server::BeginShutdown, py::call_guard<py::gil_scoped_release>())
      .def("shutdown", &dk::Server::Shutdown, py::arg("grace"), py::call_guard<py::gil_scoped_release>());
}
