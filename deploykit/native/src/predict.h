// TF Serving Predict on the native side: Server::DispatchPredict decodes (predict.cc); this encodes.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace dk {

namespace py = pybind11;
class Call;

// Encodes `outputs` (name -> numpy array) as a PredictResponse for the model version served and
// finishes `call` with it and the trailing metadata `trailers(encode_seconds)` returns. False, with
// the call untouched, when an output is not something the native encoder writes (the caller then
// encodes with the Python codec). Needs the GIL; releases it while encoding.
bool FinishPredict(Call& call, const std::string& name, int64_t version, const std::string& signature_name,
                   const py::dict& outputs, bool tensor_content, const py::object& trailers);

}  // namespace dk
