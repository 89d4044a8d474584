// Random ops from the counter-based Philox 4x32-10 stream (src/core/philox.h).
// Element i of an output reads fixed words of the seed's stream, so the values
// depend only on (seed, i): the same on every thread count and backend.
//   uniform float32/float16/bfloat16: word i (24 bits);  uniform float64: words 2i, 2i+1
//   normal (any float dtype): words 2i, 2i+1, Box-Muller in float64:
//     sqrt(-2 ln u1) cos(2 pi u2), u1 = (w0 + 1) / 2^32 in (0, 1], u2 = w1 / 2^32
//   bernoulli: word i, 1 where w / 2^32 < p
// The seed is the `seed` attribute, or an optional int32/int64 scalar input that
// overrides it (so a compiled training step can take a fresh seed each run).
#include <cmath>
#include <limits>

#include "core/philox.h"
#include "core/thread_pool.h"
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

// Reads words of one seed's stream, computing each Philox block once.
class WordReader {
 public:
  explicit WordReader(uint64_t seed) : seed_(seed) {}
  uint32_t operator()(uint64_t word) {
    if ((word >> 2) != cached_) {
      cached_ = word >> 2;
      block_ = philox::stream_block(seed_, cached_);
    }
    return block_.v[word & 3];
  }

 private:
  uint64_t seed_;
  uint64_t cached_ = std::numeric_limits<uint64_t>::max();
  philox::Block block_{};
};

template <typename T>
bool below(T v, double high) {
  return static_cast<double>(v) < high;
}

// The largest T below `high`, for values that rounded up onto the open bound.
template <typename T>
T step_down(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::nextafter(v, -std::numeric_limits<T>::infinity());
  } else if constexpr (!std::is_class_v<T>) {
    return v;  // integer dtypes are rejected by infer
  } else {     // Half / BFloat16: sign-magnitude bits
    T r = v;
    if (v.bits & 0x8000u)
      r.bits = static_cast<uint16_t>(v.bits + 1);
    else if ((v.bits & 0x7fffu) == 0)
      r.bits = 0x8001u;
    else
      r.bits = static_cast<uint16_t>(v.bits - 1);
    return r;
  }
}

template <typename T>
T to_elem(double v) {
  if constexpr (std::is_class_v<T>)
    return T(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

uint64_t seed_of(const KernelCall& k) {
  if (k.inputs.empty()) return static_cast<uint64_t>(k.ctx.i("seed"));
  const Tensor& s = k.inputs[0];
  return s.dtype() == DType::Int64 ? static_cast<uint64_t>(s.data<int64_t>()[0])
                                   : static_cast<uint64_t>(int64_t{s.data<int32_t>()[0]});
}

// Fills the output with gen(reader, i) (a double), rounded to the output dtype.
template <typename Gen>
void fill(const KernelCall& k, Gen&& gen) {
  Tensor& out = k.outputs[0];
  const uint64_t seed = seed_of(k);
  visit_dtype(out.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* o = static_cast<T*>(out.raw_data());
    parallel_for(out.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      WordReader words(seed);
      for (int64_t i = b; i < e; ++i) o[i] = gen(words, static_cast<uint64_t>(i), T{});
    });
  });
}

std::vector<TensorType> infer_random(const OpContext& c) {
  if (!c.inputs.empty()) {
    const TensorType& s = c.inputs[0];
    DS_CHECK((s.dtype == DType::Int64 || s.dtype == DType::Int32) && numel(s.shape) == 1, TypeError,
             c.where(), "the seed input must be an int64 or int32 scalar, got ", s.str());
  }
  const auto& shape = c.ints("shape");
  for (int64_t d : shape)
    DS_CHECK(d >= 0, ShapeError, c.where(), "shape must be static and non-negative, got ",
             shape_str(shape));
  return one(c.dtype("dtype"), shape);
}

void require_float(const OpContext& c) {
  DS_CHECK(is_floating(c.dtype("dtype")), TypeError, c.where(), "dtype must be a float type, got ",
           dtype_name(c.dtype("dtype")));
}

std::vector<AttrSpec> random_attrs(std::vector<AttrSpec> extra) {
  std::vector<AttrSpec> a = {{"shape", AttrKind::Ints, std::nullopt},
                             {"seed", AttrKind::Int, int64_t{0}},
                             {"dtype", AttrKind::DType, DType::Float32}};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

const OpRegistrar reg([] {
  register_op({
      .name = "random_uniform",
      .traits = kRandom,
      .num_inputs = 1,
      .min_inputs = 0,
      .attrs = random_attrs({{"low", AttrKind::Float, 0.0}, {"high", AttrKind::Float, 1.0}}),
      .infer =
          [](const OpContext& c) {
            require_float(c);
            DS_CHECK(c.f("low") < c.f("high"), ValueError, c.where(), "high (", c.f("high"),
                     ") must be greater than low (", c.f("low"), ")");
            return infer_random(c);
          },
      .reference =
          [](const KernelCall& k) {
            const double low = k.ctx.f("low"), high = k.ctx.f("high");
            fill(k, [&](WordReader& w, uint64_t i, auto zero) {
              using T = decltype(zero);
              const double u = std::is_same_v<T, double> ? philox::uniform53(w(2 * i), w(2 * i + 1))
                                                         : philox::uniform24(w(i));
              const T v = to_elem<T>(low + (high - low) * u);
              return below(v, high) ? v : step_down(v);
            });
          },
      .onnx = "RandomUniform",
  });

  register_op({
      .name = "random_normal",
      .traits = kRandom,
      .num_inputs = 1,
      .min_inputs = 0,
      .attrs = random_attrs({{"mean", AttrKind::Float, 0.0}, {"stddev", AttrKind::Float, 1.0}}),
      .infer =
          [](const OpContext& c) {
            require_float(c);
            DS_CHECK(c.f("stddev") >= 0, ValueError, c.where(), "stddev must be >= 0, got ",
                     c.f("stddev"));
            return infer_random(c);
          },
      .reference =
          [](const KernelCall& k) {
            const double mean = k.ctx.f("mean"), stddev = k.ctx.f("stddev");
            fill(k, [&](WordReader& w, uint64_t i, auto zero) {
              using T = decltype(zero);
              const double u1 = philox::uniform32_open0(w(2 * i));
              const double u2 = philox::uniform32(w(2 * i + 1));
              const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
              return to_elem<T>(mean + stddev * z);
            });
          },
      .onnx = "RandomNormal",
  });

  register_op({
      .name = "bernoulli",
      .traits = kRandom,
      .num_inputs = 1,
      .min_inputs = 0,
      .attrs = random_attrs({{"p", AttrKind::Float, std::nullopt}}),
      .infer =
          [](const OpContext& c) {
            const double p = c.f("p");
            DS_CHECK(p >= 0 && p <= 1, ValueError, c.where(), "p must be in [0, 1], got ", p);
            return infer_random(c);
          },
      .reference =
          [](const KernelCall& k) {
            const double p = k.ctx.f("p");
            fill(k, [&](WordReader& w, uint64_t i, auto zero) {
              using T = decltype(zero);
              return to_elem<T>(philox::uniform32(w(i)) < p ? 1.0 : 0.0);
            });
          },
  });
});

}  // namespace
}  // namespace ops

Tensor random_uniform(const Shape& shape, uint64_t seed, double low, double high, DType dtype) {
  return apply1("random_uniform", {},
                {{"shape", shape},
                 {"seed", static_cast<int64_t>(seed)},
                 {"low", low},
                 {"high", high},
                 {"dtype", dtype}});
}
Tensor random_normal(const Shape& shape, uint64_t seed, double mean, double stddev, DType dtype) {
  return apply1("random_normal", {},
                {{"shape", shape},
                 {"seed", static_cast<int64_t>(seed)},
                 {"mean", mean},
                 {"stddev", stddev},
                 {"dtype", dtype}});
}
Tensor bernoulli(const Shape& shape, uint64_t seed, double p, DType dtype) {
  return apply1(
      "bernoulli", {},
      {{"shape", shape}, {"seed", static_cast<int64_t>(seed)}, {"p", p}, {"dtype", dtype}});
}

}  // namespace ds
