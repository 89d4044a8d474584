// Shared pieces of the oneDNN kernels: the engine, a per-thread stream, thread
// control, plain-layout memory descriptors and a thread-safe primitive cache.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

#include "ds/tensor.h"

namespace ds::cpu::onednn {

dnnl::engine& engine();
// Each calling thread gets its own stream (a stream is not shared between threads).
dnnl::stream& stream();

// Debian's libdnnl runs on OpenMP: set this thread's OpenMP team size to
// ds::num_threads() before a primitive is created or executed.
int use_ds_threads();

inline dnnl::memory::dims dims_of(const Shape& s) { return dnnl::memory::dims(s.begin(), s.end()); }
// float32 in the plain row-major layout of `s` (nchw for 4-D, oihw weights, ...).
dnnl::memory::desc plain_f32(const Shape& s);
// A [groups, o/groups, i, kh, kw] view of OIHW weights (goihw) for grouped convolutions.
dnnl::memory::desc weights_f32(const Shape& oihw, int64_t groups);

dnnl::memory wrap(const dnnl::memory::desc& md, const Tensor& t);

// A user buffer in its plain layout, or a scratch buffer in the layout the
// primitive wants, with reorders in and out. Scratch comes from the pooled allocator.
class Staged {
 public:
  Staged(const dnnl::memory::desc& want, const dnnl::memory::desc& user_md, const Tensor& user);
  const dnnl::memory& mem() const { return staged_ ? scratch_ : user_; }
  void reorder_in();   // user -> scratch (inputs)
  void reorder_out();  // scratch -> user (outputs)

 private:
  dnnl::memory user_, scratch_;
  Tensor scratch_storage_;
  bool staged_ = false;
};

// Attributes for every cached primitive: the caller passes the scratchpad (from
// the pooled allocator), so one primitive can run on several threads at once.
const dnnl::primitive_attr& user_scratchpad();

// Scratch memory for one execution of a primitive made with user_scratchpad().
class Scratchpad {
 public:
  explicit Scratchpad(const dnnl::primitive_desc_base& pd);
  const dnnl::memory& mem() const { return mem_; }

 private:
  Tensor storage_;
  dnnl::memory mem_;
};

// A process-wide cache of primitives (and their descriptors) keyed by a string
// that names the problem: creating one costs far more than running it on small shapes.
std::shared_ptr<void> cache_find(const std::string& key);
std::shared_ptr<void> cache_insert(const std::string& key, std::shared_ptr<void> value);

template <class T> std::shared_ptr<T> cached(const std::string& key, const std::function<std::shared_ptr<T>()>& make) {
  if (auto hit = cache_find(key)) return std::static_pointer_cast<T>(hit);
  return std::static_pointer_cast<T>(cache_insert(key, make()));
}

std::string dims_key(const Shape& s);

}  // namespace ds::cpu::onednn
