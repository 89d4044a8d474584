// libFuzzer target: the v2 inference request parser must answer every body with
// a request or an HttpError (400) — never crash, hang or leak. Build and run:
//   fuzz/build.sh && ./build-fuzz/fuzz_infer_request fuzz/corpus/infer_request
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "serve/infer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<ds::serve::InputSpec> inputs = {
      {"x", ds::DType::Float32, {ds::dyn, 3}},
      {"ids", ds::DType::Int64, {ds::dyn}},
      {"mask", ds::DType::Bool, {ds::dyn, 2}},
      {"small", ds::DType::Int8, {ds::dyn, 1}}};
  static const std::vector<std::string> outputs = {"y"};
  try {
    ds::serve::parse_infer_request(std::string_view(reinterpret_cast<const char*>(data), size),
                                   inputs, outputs, 8);
  } catch (const ds::serve::HttpError&) {
  }
  return 0;
}
