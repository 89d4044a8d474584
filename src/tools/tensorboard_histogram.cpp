#include <algorithm>
#include <cfloat>
#include <cmath>

#include "ds/tensorboard.h"

namespace ds::tensorboard {

const std::vector<double>& default_bucket_limits() {
  // As TensorFlow's histogram.cc: edges growing by 10% from 1e-12 to 1e20, the
  // mirrored negatives, 0 in between, and ±DBL_MAX at the ends.
  static const std::vector<double> limits = [] {
    std::vector<double> pos;
    for (double v = 1.0e-12; v < 1.0e20; v *= 1.1) pos.push_back(v);
    pos.push_back(DBL_MAX);
    std::vector<double> all;
    for (auto it = pos.rbegin(); it != pos.rend(); ++it) all.push_back(-*it);
    all.push_back(0.0);
    all.insert(all.end(), pos.begin(), pos.end());
    return all;
  }();
  return limits;
}

Histogram Histogram::from_values(const Tensor& values) {
  DS_CHECK(values.defined() && !values.is_symbolic(), ValueError,
           "histogram: needs a concrete tensor");
  DS_CHECK(values.numel() > 0, ValueError, "histogram: the tensor is empty");
  const std::vector<double>& limits = default_bucket_limits();
  std::vector<double> counts(limits.size(), 0.0);
  Histogram h;
  h.min = DBL_MAX;
  h.max = -DBL_MAX;
  const Tensor c = values.contiguous();
  visit_dtype(c.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = static_cast<const T*>(c.raw_data());
    for (int64_t i = 0; i < c.numel(); ++i) {
      const double v = static_cast<double>(static_cast<std::conditional_t<
          std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>>(p[i]));
      DS_CHECK(!std::isnan(v), ValueError, "histogram: value ", i, " is NaN");
      // Bucket i holds values in [limits[i-1], limits[i]), as TensorFlow counts them.
      const auto b = std::upper_bound(limits.begin(), limits.end(), v) - limits.begin();
      counts[static_cast<size_t>(std::min<std::ptrdiff_t>(b, std::ssize(limits) - 1))] += 1;
      h.min = std::min(h.min, v);
      h.max = std::max(h.max, v);
      h.sum += v;
      h.sum_squares += v * v;
    }
  });
  h.num = static_cast<double>(c.numel());
  // Runs of empty buckets collapse into one entry ending at the run's last edge.
  for (size_t i = 0; i < counts.size();) {
    double end = limits[i], count = counts[i];
    ++i;
    if (count <= 0.0) {
      while (i < counts.size() && counts[i] <= 0.0) end = limits[i++];
    }
    h.bucket_limits.push_back(end);
    h.bucket_counts.push_back(count);
  }
  return h;
}

}  // namespace ds::tensorboard
