#include "backends/cpu/onednn/onednn_common.h"

#include <omp.h>

#include <algorithm>
#include <mutex>
#include <sstream>

#include "ds/runtime.h"

namespace ds::cpu::onednn {

dnnl::engine& engine() {
  static dnnl::engine* e = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

int use_ds_threads() {
  const int n = num_threads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
  return n;
}

dnnl::memory::desc plain_f32(const Shape& s) {
  return dnnl::memory::desc(dims_of(s), dnnl::memory::data_type::f32,
                            dims_of(contiguous_strides(s)));
}

dnnl::memory::desc weights_f32(const Shape& oihw, int64_t groups) {
  if (groups == 1) return plain_f32(oihw);
  return dnnl::memory::desc({groups, oihw[0] / groups, oihw[1], oihw[2], oihw[3]},
                            dnnl::memory::data_type::f32, dnnl::memory::format_tag::goihw);
}

dnnl::memory wrap(const dnnl::memory::desc& md, const Tensor& t) {
  return dnnl::memory(md, engine(), t.raw_data());
}

Staged::Staged(const dnnl::memory::desc& want, const dnnl::memory::desc& user_md,
               const Tensor& user)
    : user_(wrap(user_md, user)), staged_(want != user_md) {
  if (!staged_) return;
  scratch_storage_ = Tensor::empty({static_cast<int64_t>(want.get_size())}, DType::UInt8);
  scratch_ = dnnl::memory(want, engine(), scratch_storage_.raw_data());
}

void Staged::reorder_in() {
  if (staged_) dnnl::reorder(user_, scratch_).execute(stream(), user_, scratch_);
}

void Staged::reorder_out() {
  if (staged_) dnnl::reorder(scratch_, user_).execute(stream(), scratch_, user_);
}

const dnnl::primitive_attr& user_scratchpad() {
  static const dnnl::primitive_attr* attr = [] {
    auto* a = new dnnl::primitive_attr;
    a->set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return a;
  }();
  return *attr;
}

Scratchpad::Scratchpad(const dnnl::primitive_desc_base& pd) {
  const dnnl::memory::desc md = pd.scratchpad_desc();
  storage_ = Tensor::empty({std::max<int64_t>(static_cast<int64_t>(md.get_size()), 1)}, DType::UInt8);
  mem_ = dnnl::memory(md, engine(), storage_.raw_data());
}

namespace {
std::mutex g_mutex;
std::unordered_map<std::string, std::shared_ptr<void>>& cache() {
  static auto* c = new std::unordered_map<std::string, std::shared_ptr<void>>;
  return *c;
}
}  // namespace

std::shared_ptr<void> cache_find(const std::string& key) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = cache().find(key);
  return it == cache().end() ? nullptr : it->second;
}

std::shared_ptr<void> cache_insert(const std::string& key, std::shared_ptr<void> value) {
  std::lock_guard<std::mutex> lock(g_mutex);
  // Two threads may build the same primitive; the first one stored wins.
  return cache().emplace(key, std::move(value)).first->second;
}

std::string dims_key(const Shape& s) {
  std::ostringstream os;
  for (int64_t d : s) os << d << ',';
  return os.str();
}

}  // namespace ds::cpu::onednn
