// The Open Inference Protocol v2 JSON: request parsing with complete validation
// (the fuzzer's target) and response building.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ds/error.h"
#include "ds/tensor.h"

namespace ds::serve {

// A request the server answers with `status` and {"error": message}.
class HttpError : public Error {
 public:
  HttpError(int status, const std::string& message) : Error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct InputSpec {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;  // dim 0 is the batch (dyn)
};

struct InferRequest {
  std::string id;
  std::vector<Tensor> inputs;  // in the model's input order
  std::optional<int64_t> priority;
  std::optional<int64_t> timeout_us;
  std::vector<std::string> outputs;  // requested; empty: all
};

// Throws HttpError(400) naming the field for anything malformed.
InferRequest parse_infer_request(std::string_view body, const std::vector<InputSpec>& inputs,
                                 const std::vector<std::string>& output_names,
                                 int64_t max_batch_size);

std::string infer_response(const std::string& model, const std::string& id,
                           const std::vector<std::string>& names, const std::vector<Tensor>& outputs);
std::string error_body(const std::string& message);

const char* v2_datatype(DType dtype);
DType dtype_from_v2(const std::string& datatype);  // throws HttpError(400)

}  // namespace ds::serve
