// See tensors.h. The dtype table mirrors tensor_codec._BY_DT for the numeric dtypes.
#include "tensors.h"

#include <cstring>
#include <limits>
#include <type_traits>

namespace dk {
namespace {

using deploykit::tfs::DataType;
using deploykit::tfs::TensorProto;

// Which TensorProto field carries a dtype's typed values.
enum class Field { kFloat, kDouble, kInt, kInt64, kUint32, kUint64, kBool, kHalf };

struct DtypeInfo {
  int dtype;
  char kind;  // numpy dtype kind
  int itemsize;
  Field field;
};

constexpr DtypeInfo kDtypes[] = {
    {deploykit::tfs::DT_FLOAT, 'f', 4, Field::kFloat},   {deploykit::tfs::DT_DOUBLE, 'f', 8, Field::kDouble},
    {deploykit::tfs::DT_HALF, 'f', 2, Field::kHalf},     {deploykit::tfs::DT_INT8, 'i', 1, Field::kInt},
    {deploykit::tfs::DT_INT16, 'i', 2, Field::kInt},     {deploykit::tfs::DT_INT32, 'i', 4, Field::kInt},
    {deploykit::tfs::DT_INT64, 'i', 8, Field::kInt64},   {deploykit::tfs::DT_UINT8, 'u', 1, Field::kInt},
    {deploykit::tfs::DT_UINT16, 'u', 2, Field::kInt},    {deploykit::tfs::DT_UINT32, 'u', 4, Field::kUint32},
    {deploykit::tfs::DT_UINT64, 'u', 8, Field::kUint64}, {deploykit::tfs::DT_BOOL, 'b', 1, Field::kBool},
};

const DtypeInfo* ByDtype(int dtype) {
  for (const auto& info : kDtypes)
    if (info.dtype == dtype) return &info;
  return nullptr;
}

const DtypeInfo* ByNumpy(char kind, int itemsize) {
  for (const auto& info : kDtypes)
    if (info.kind == kind && info.itemsize == itemsize) return &info;
  return nullptr;
}

// The typed field's values exactly as stored (no conversion) when its element type is the dtype's.
template <typename T>
std::optional<DecodedTensor> ViewOrBroadcast(const google::protobuf::RepeatedField<T>& values, DecodedTensor out,
                                             int64_t count) {
  if (values.size() == count) {
    out.data = values.data();
    return out;
  }
  if (values.size() == 1 && count > 1) {  // TensorFlow fills the shape with a single value
    out.owned = std::make_shared<std::string>(count * sizeof(T), '\0');
    T* filled = reinterpret_cast<T*>(out.owned->data());
    std::fill(filled, filled + count, values.Get(0));
    out.data = filled;
    return out;
  }
  return std::nullopt;
}

// int_val (int32) -> a narrower integer dtype; nullopt when a value does not fit (numpy raises there).
template <typename T>
std::optional<DecodedTensor> Narrow(const google::protobuf::RepeatedField<int32_t>& values, DecodedTensor out,
                                    int64_t count, bool wrap) {
  if (values.size() != count && !(values.size() == 1 && count > 1)) return std::nullopt;
  out.owned = std::make_shared<std::string>(count * sizeof(T), '\0');
  T* target = reinterpret_cast<T*>(out.owned->data());
  for (int64_t i = 0; i < count; ++i) {
    int32_t v = values.Get(values.size() == 1 ? 0 : static_cast<int>(i));
    if (!wrap && (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())) return std::nullopt;
    target[i] = static_cast<T>(v);  // half_val: the 16-bit pattern, as numpy's astype(uint16) wraps
  }
  out.data = target;
  return out;
}

}  // namespace

std::optional<DecodedTensor> Decode(const TensorProto& proto, int64_t max_bytes) {
  const DtypeInfo* info = ByDtype(proto.dtype());
  if (info == nullptr || proto.tensor_shape().unknown_rank()) return std::nullopt;
  if (proto.tensor_shape().dim_size() > kMaxDims) return std::nullopt;
  DecodedTensor out;
  out.dtype = info->dtype;
  bool empty = false;
  for (const auto& dim : proto.tensor_shape().dim()) {
    if (dim.size() < 0) return std::nullopt;
    empty = empty || dim.size() == 0;
    out.shape.push_back(dim.size());
  }
  int64_t count = 1;
  for (int64_t d : out.shape) {  // bounded before anything is allocated (zeros aside); no overflow
    int64_t extent = d > 0 ? d : 1;
    if (extent > max_bytes / info->itemsize / count) return std::nullopt;
    count *= extent;
  }
  if (empty) count = 0;
  if (!proto.tensor_content().empty()) {
    if (static_cast<int64_t>(proto.tensor_content().size()) != count * info->itemsize) return std::nullopt;
    out.data = proto.tensor_content().data();
    return out;
  }
  switch (info->field) {
    case Field::kFloat: return ViewOrBroadcast(proto.float_val(), std::move(out), count);
    case Field::kDouble: return ViewOrBroadcast(proto.double_val(), std::move(out), count);
    case Field::kInt64: return ViewOrBroadcast(proto.int64_val(), std::move(out), count);
    case Field::kUint32: return ViewOrBroadcast(proto.uint32_val(), std::move(out), count);
    case Field::kUint64: return ViewOrBroadcast(proto.uint64_val(), std::move(out), count);
    case Field::kBool: return ViewOrBroadcast(proto.bool_val(), std::move(out), count);
    case Field::kHalf: return Narrow<uint16_t>(proto.half_val(), std::move(out), count, /*wrap=*/true);
    case Field::kInt:
      switch (info->dtype) {
        case deploykit::tfs::DT_INT32: return ViewOrBroadcast(proto.int_val(), std::move(out), count);
        case deploykit::tfs::DT_INT8: return Narrow<int8_t>(proto.int_val(), std::move(out), count, false);
        case deploykit::tfs::DT_INT16: return Narrow<int16_t>(proto.int_val(), std::move(out), count, false);
        case deploykit::tfs::DT_UINT8: return Narrow<uint8_t>(proto.int_val(), std::move(out), count, false);
        case deploykit::tfs::DT_UINT16: return Narrow<uint16_t>(proto.int_val(), std::move(out), count, false);
      }
  }
  return std::nullopt;
}

py::array ToNumpy(const DecodedTensor& tensor, const std::shared_ptr<const void>& owner) {
  const DtypeInfo* info = ByDtype(tensor.dtype);
  std::string format = info->kind == 'b' ? "bool" : std::string(1, info->kind) + std::to_string(info->itemsize);
  // Owned buffers keep themselves alive; views keep the whole parsed request alive.
  auto* keep = new std::shared_ptr<const void>(tensor.owned ? std::shared_ptr<const void>(tensor.owned) : owner);
  py::capsule base(keep, [](void* p) { delete static_cast<std::shared_ptr<const void>*>(p); });
  py::array array(py::dtype(format), tensor.shape, {}, tensor.data, base);
  // Read-only, as tensor_codec's np.frombuffer arrays: a model must not write into a request.
  py::detail::array_proxy(array.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return array;
}

std::optional<OutputView> ViewOutput(const std::string& name, const py::array& array) {
  py::dtype dtype = array.dtype();
  const DtypeInfo* info = ByNumpy(dtype.kind(), static_cast<int>(dtype.itemsize()));
  char order = dtype.byteorder();
  bool native_order = order == '=' || order == '|';
  if (info == nullptr || !native_order || !(array.flags() & py::array::c_style)) return std::nullopt;
  if (dtype.kind() == 'f' && dtype.itemsize() == 2 && dtype.char_() != 'e') return std::nullopt;  // not float16
  OutputView view;
  view.name = name;
  view.dtype = info->dtype;
  view.shape.assign(array.shape(), array.shape() + array.ndim());
  view.data = array.data();
  view.nbytes = static_cast<size_t>(array.nbytes());
  return view;
}

namespace {

template <typename T, typename Field>
void CopyTo(const OutputView& view, Field* field) {
  size_t n = view.nbytes / sizeof(T);
  field->Resize(static_cast<int>(n), T{});
  std::memcpy(field->mutable_data(), view.data, view.nbytes);
}

template <typename T>
void WidenTo(const OutputView& view, google::protobuf::RepeatedField<int32_t>* field) {
  size_t n = view.nbytes / sizeof(T);
  field->Reserve(static_cast<int>(n));
  const T* values = static_cast<const T*>(view.data);
  for (size_t i = 0; i < n; ++i) field->AddAlreadyReserved(static_cast<int32_t>(values[i]));
}

}  // namespace

void Encode(const OutputView& view, bool tensor_content, TensorProto* proto) {
  proto->set_dtype(static_cast<DataType>(view.dtype));
  for (int64_t d : view.shape) proto->mutable_tensor_shape()->add_dim()->set_size(d);
  if (tensor_content) {
    proto->set_tensor_content(static_cast<const char*>(view.data), view.nbytes);
    return;
  }
  switch (view.dtype) {
    case deploykit::tfs::DT_FLOAT: return CopyTo<float>(view, proto->mutable_float_val());
    case deploykit::tfs::DT_DOUBLE: return CopyTo<double>(view, proto->mutable_double_val());
    case deploykit::tfs::DT_INT32: return CopyTo<int32_t>(view, proto->mutable_int_val());
    case deploykit::tfs::DT_INT64: return CopyTo<int64_t>(view, proto->mutable_int64_val());
    case deploykit::tfs::DT_UINT32: return CopyTo<uint32_t>(view, proto->mutable_uint32_val());
    case deploykit::tfs::DT_UINT64: return CopyTo<uint64_t>(view, proto->mutable_uint64_val());
    case deploykit::tfs::DT_BOOL: return CopyTo<bool>(view, proto->mutable_bool_val());
    case deploykit::tfs::DT_HALF: return WidenTo<uint16_t>(view, proto->mutable_half_val());
    case deploykit::tfs::DT_INT8: return WidenTo<int8_t>(view, proto->mutable_int_val());
    case deploykit::tfs::DT_INT16: return WidenTo<int16_t>(view, proto->mutable_int_val());
    case deploykit::tfs::DT_UINT8: return WidenTo<uint8_t>(view, proto->mutable_int_val());
    case deploykit::tfs::DT_UINT16: return WidenTo<uint16_t>(view, proto->mutable_int_val());
  }
}

}  // namespace dk
