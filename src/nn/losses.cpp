// Losses as ds-op compositions.
#include "ds/nn/losses.h"

#include "ds/ops.h"
#include "ir/ops/softmax_cross_entropy.h"

namespace ds::nn {
namespace {

Tensor reduce(const Tensor& per_item, const std::string& reduction, const std::string& loss) {
  if (reduction == "mean") return mean(per_item);
  if (reduction == "sum") return sum(per_item);
  if (reduction == "none") return per_item;
  throw ValueError(loss + ": reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
}

void check_same_shape(const Tensor& a, const Tensor& b, const std::string& loss) {
  DS_CHECK(a.shape() == b.shape(), ShapeError, loss, ": input ", shape_str(a.shape()),
           " and target ", shape_str(b.shape()), " must have the same shape");
}

void check_rows(const Tensor& input, const Tensor& target, const std::string& loss) {
  DS_CHECK(input.ndim() == 2, ShapeError, loss, ": expected input [N, C], got ",
           shape_str(input.shape()));
  DS_CHECK(target.ndim() == 1 && target.shape()[0] == input.shape()[0], ShapeError, loss,
           ": expected target [", input.shape()[0], "] for input ", shape_str(input.shape()),
           ", got ", shape_str(target.shape()));
  DS_CHECK(is_integral(target.dtype()), TypeError, loss,
           ": target must hold class indices (an integer dtype), got ", dtype_name(target.dtype()));
}

// -logp[target] per row, with ignored rows masked; the masked mean divides by the kept count.
Tensor nll_rows(const Tensor& log_probs, const Tensor& target, int64_t ignore_index,
                double label_smoothing, const std::string& reduction, const std::string& loss) {
  check_rows(log_probs, target, loss);
  const Tensor keep = ne(target, scalar_like(static_cast<double>(ignore_index), target));
  const Tensor safe = where(keep, target, scalar_like(0.0, target));
  // A gather of each row's target entry (its gradient a scatter): O(N), where a one-hot
  // product would build and read an [N, C] tensor (3.3 GB for GPT-2's batch).
  const int64_t rows = log_probs.shape()[0];
  Tensor per = neg(reshape(take_along_axis(log_probs, reshape(safe, {rows, 1}), 1), {rows}));
  if (label_smoothing > 0)
    per = per * (1.0 - label_smoothing) + neg(mean(log_probs, {1})) * label_smoothing;
  const Tensor keepf = cast(keep, log_probs.dtype());
  per = per * keepf;
  if (reduction == "mean") return sum(per) / sum(keepf);
  return reduce(per, reduction, loss);
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing,
                     int64_t ignore_index, const std::string& reduction) {
  DS_CHECK(label_smoothing >= 0 && label_smoothing <= 1, ValueError,
           "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  check_rows(logits, target, "cross_entropy");
  DS_CHECK(reduction == "mean" || reduction == "sum" || reduction == "none", ValueError,
           "cross_entropy: reduction must be 'mean', 'sum' or 'none', got '", reduction, "'");
  // One softmax_cross_entropy op: a pass over the logits forward and one backward,
  // where log_softmax + gather + masks re-read them several times.
  const bool index_type = target.dtype() == DType::Int32 || target.dtype() == DType::Int64;
  const Tensor x = is_floating(logits.dtype()) ? logits : cast(logits, DType::Float32);
  const Tensor per =
      softmax_cross_entropy(x, index_type ? target : cast(target, DType::Int64), ignore_index,
                            label_smoothing)
          .loss;
  // The loss comes in float32 for float16/bfloat16 logits: the result keeps the logits' type.
  const auto as_logits = [&](const Tensor& v) { return cast(v, x.dtype()); };
  if (reduction == "none") return as_logits(per);
  if (reduction == "sum") return as_logits(sum(per));
  const Tensor kept = cast(ne(target, scalar_like(static_cast<double>(ignore_index), target)),
                           per.dtype());
  return as_logits(sum(per) / sum(kept));
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, int64_t ignore_index,
                const std::string& reduction) {
  return nll_rows(log_probs, target, ignore_index, 0.0, reduction, "nll_loss");
}

Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  check_same_shape(input, target, "mse_loss");
  return reduce(square(input - target), reduction, "mse_loss");
}

Tensor l1_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  check_same_shape(input, target, "l1_loss");
  return reduce(abs(input - target), reduction, "l1_loss");
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta,
                      const std::string& reduction) {
  check_same_shape(input, target, "smooth_l1_loss");
  DS_CHECK(beta >= 0, ValueError, "smooth_l1_loss: beta must be >= 0, got ", beta);
  const Tensor d = abs(input - target);
  if (beta == 0) return reduce(d, reduction, "smooth_l1_loss");
  const Tensor quadratic = square(d) * (0.5 / beta);
  return reduce(where(lt(d, scalar_like(beta, d)), quadratic, d - 0.5 * beta), reduction,
                "smooth_l1_loss");
}

Tensor binary_cross_entropy_with_logits(const Tensor& x, const Tensor& y,
                                        const std::string& reduction) {
  check_same_shape(x, y, "binary_cross_entropy_with_logits");
  return reduce(relu(x) - x * y + log1p(exp(neg(abs(x)))), reduction,
                "binary_cross_entropy_with_logits");
}

}  // namespace ds::nn
