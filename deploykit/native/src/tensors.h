// TensorProto <-> numpy for the hot path, with the same rules as deploykit/protocol/tensor_codec.py.
//
// Decoding hands out numpy arrays that view the parsed request's memory (tensor_content bytes or a
// typed *_val field) without copying; the request stays alive through the arrays' base object.
// Only what the native side decodes exactly like tensor_codec does is decoded here: anything else
// (strings, bfloat16, malformed tensors) makes the caller pass the raw request to the Python
// handler, so every error message stays tensor_codec's own.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "deploykit/protocol/protos/tensor.pb.h"

namespace dk {

namespace py = pybind11;

//: Most dimensions a numpy array may have (NPY_MAXDIMS); more is left to the Python codec's error.
constexpr int kMaxDims = 64;

// A tensor checked and laid out without the GIL: where its elements are and what they are.
struct DecodedTensor {
  int dtype = 0;                     // TF DataType
  std::vector<int64_t> shape;
  const void* data = nullptr;        // view into the request, or into `owned`
  std::shared_ptr<std::string> owned;  // converted / broadcast values when no view is possible
};

// Lays `proto` out as a contiguous buffer; nullopt when the Python codec must decide (see above),
// among them a declared size above `max_bytes` (--max_decoded_tensor_bytes), checked before allocating.
std::optional<DecodedTensor> Decode(const deploykit::tfs::TensorProto& proto, int64_t max_bytes);

// A numpy array over `tensor`'s memory, kept alive by `owner` (the parsed request). Needs the GIL.
py::array ToNumpy(const DecodedTensor& tensor, const std::shared_ptr<const void>& owner);

// An output array's layout, read with the GIL so that encoding can run without it.
struct OutputView {
  std::string name;
  int dtype = 0;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// The view of a C-contiguous numeric array; nullopt when the native encoder cannot write it
// (strings, bfloat16, other dtypes): the Python codec then encodes the whole response.
std::optional<OutputView> ViewOutput(const std::string& name, const py::array& array);

// Fills `proto` from `view`: typed *_val fields (TF Serving's default) or tensor_content.
void Encode(const OutputView& view, bool tensor_content, deploykit::tfs::TensorProto* proto);

}  // namespace dk
