// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// padded with spaces to 8 bytes, then the raw little-endian tensor bytes.
// Files written here are readable by the `safetensors` Python package and vice versa.
#pragma once

#include <map>
#include <string>

#include "ds/tensor.h"

namespace ds {

using TensorMap = std::map<std::string, Tensor>;
using SafetensorsMetadata = std::map<std::string, std::string>;

// Writes `tensors` (concrete, any layout, any dtype) and optional string metadata.
// The file is written to a temporary beside `path`, synced, then renamed over it,
// so a crash leaves either the old file or the complete new one. Throws IOError.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const SafetensorsMetadata& metadata = {});

// Reads every tensor (contiguous CPU tensors owning their memory). A truncated or
// malformed file throws IOError naming the file and the problem.
TensorMap load_safetensors(const std::string& path);

// Reads only the "__metadata__" entry (empty when the file has none).
SafetensorsMetadata load_safetensors_metadata(const std::string& path);

// The format's dtype code ("F32", "BF16", "I64", "BOOL", ...) and back.
const char* safetensors_dtype_code(DType dtype);
DType dtype_from_safetensors_code(const std::string& code);  // throws ValueError if unknown

}  // namespace ds
