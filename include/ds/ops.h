// The op set as free functions. Each works on concrete tensors (eager: runs at
// once) and on symbolic tensors (adds a node to their graph). The same functions
// are reachable as ds::hdl::* (the device-neutral namespace) and as Graph methods.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ds/graph.h"

namespace ds {

// Generic entry: applies op `name` to `inputs`; returns all outputs.
std::vector<Tensor> apply(const std::string& op, const std::vector<Tensor>& inputs,
                          const AttrMap& attrs = {}, const std::string& name = "");
Tensor apply1(const std::string& op, const std::vector<Tensor>& inputs,
              const AttrMap& attrs = {}, const std::string& name = "");

// ---- elementwise unary
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor expm1(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor gelu(const Tensor& x, const std::string& approximate = "none");  // "none" | "tanh"
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
Tensor erf(const Tensor& x);
Tensor floor(const Tensor& x);
Tensor ceil(const Tensor& x);
Tensor round(const Tensor& x);  // half to even, like numpy
Tensor sign(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor square(const Tensor& x);
Tensor logical_not(const Tensor& x);
Tensor isnan(const Tensor& x);
Tensor cast(const Tensor& x, DType dtype);

// ---- elementwise binary (NumPy broadcasting and promotion)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);  // true division
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor mod(const Tensor& a, const Tensor& b);  // sign of the divisor, like numpy
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// A scalar operand takes the other operand's dtype (like a Python scalar in numpy).
Tensor scalar_like(double v, const Tensor& like);

Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// ---- reductions over `axes` (empty: all axes)
using Axes = std::vector<int64_t>;
Tensor sum(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor max(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor min(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor prod(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor var(const Tensor& x, const Axes& axes = {}, bool keepdims = false, int64_t ddof = 0);
Tensor std(const Tensor& x, const Axes& axes = {}, bool keepdims = false, int64_t ddof = 0);
Tensor logsumexp(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor argmin(const Tensor& x, int64_t axis, bool keepdims = false);
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

// ---- linear algebra
Tensor matmul(const Tensor& a, const Tensor& b);  // batched, broadcasting, like numpy
// y = x @ W^T + bias (PyTorch's linear; weight [out, in]).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});
// alpha * op(a) @ op(b) + beta * c (ONNX Gemm), 2-D.
Tensor gemm(const Tensor& a, const Tensor& b, const Tensor& c = {}, double alpha = 1.0,
            double beta = 1.0, bool trans_a = false, bool trans_b = false);

// ---- convolution and pooling (NCHW, weights OIHW)
using Pair = std::vector<int64_t>;  // one value (both dims) or two
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = {}, const Pair& stride = {1},
              const Pair& padding = {0}, const Pair& dilation = {1}, int64_t groups = 1);
// Weights [in, out/groups, kh, kw], like PyTorch.
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias = {},
                        const Pair& stride = {1}, const Pair& padding = {0},
                        const Pair& output_padding = {0}, const Pair& dilation = {1},
                        int64_t groups = 1);
Tensor max_pool2d(const Tensor& x, const Pair& kernel, const Pair& stride = {},
                  const Pair& padding = {0}, const Pair& dilation = {1}, bool ceil_mode = false);
Tensor avg_pool2d(const Tensor& x, const Pair& kernel, const Pair& stride = {},
                  const Pair& padding = {0}, bool ceil_mode = false,
                  bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, const Pair& output_size);
Tensor global_avg_pool2d(const Tensor& x);  // [N, C, 1, 1]

// ---- normalization
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight = {}, const Tensor& bias = {}, double eps = 1e-5);
// Over the trailing dims of `normalized_shape`.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                double eps = 1e-6);

// ---- shape and indexing
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 extent is inferred
Tensor flatten(const Tensor& x, int64_t start_axis = 1, int64_t end_axis = -1);
Tensor squeeze(const Tensor& x, const Axes& axes = {});
Tensor unsqueeze(const Tensor& x, int64_t axis);
Tensor transpose(const Tensor& x, int64_t a = -2, int64_t b = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& axes);
Tensor broadcast_to(const Tensor& x, const Shape& shape);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t axis = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis = 0);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
Tensor take_along_axis(const Tensor& x, const Tensor& indices, int64_t axis);  // gather
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& indices);
Tensor embedding(const Tensor& indices, const Tensor& weight);
// pads: (before, after) per axis from the first axis, like numpy.pad; mode "constant"|"reflect".
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, const std::string& mode = "constant",
           double value = 0.0);
Tensor tril(const Tensor& x, int64_t k = 0);
Tensor triu(const Tensor& x, int64_t k = 0);

// ---- creation
Tensor arange(double start, double stop, double step = 1.0, DType dtype = DType::Float32);
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32);
Tensor zeros(const Shape& shape, DType dtype = DType::Float32);
Tensor ones(const Shape& shape, DType dtype = DType::Float32);
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype = DType::Float32);

// ---- random: counter-based (Philox 4x32-10); the same seed gives the same numbers on
// every backend and thread count.
Tensor random_uniform(const Shape& shape, uint64_t seed, double low = 0.0, double high = 1.0,
                      DType dtype = DType::Float32);
Tensor random_normal(const Shape& shape, uint64_t seed, double mean = 0.0, double stddev = 1.0,
                     DType dtype = DType::Float32);
Tensor bernoulli(const Shape& shape, uint64_t seed, double p, DType dtype = DType::Float32);

}  // namespace ds
