// Learning-rate schedules (the formulas of torch.optim.lr_scheduler).
#include <cmath>

#include "ds/optim.h"

namespace ds::optim {

StepLR::StepLR(double base_lr, int64_t step_size, double gamma)
    : base_(base_lr), gamma_(gamma), step_size_(step_size) {
  DS_CHECK(step_size > 0, ValueError, "StepLR: step_size must be > 0, got ", step_size);
}

double StepLR::lr(int64_t step) const {
  return base_ * std::pow(gamma_, static_cast<double>(step / step_size_));
}

CosineAnnealingLR::CosineAnnealingLR(double base_lr, int64_t t_max, double eta_min)
    : base_(base_lr), eta_min_(eta_min), t_max_(t_max) {
  DS_CHECK(t_max > 0, ValueError, "CosineAnnealingLR: t_max must be > 0, got ", t_max);
}

double CosineAnnealingLR::lr(int64_t step) const {
  if (step >= t_max_) return eta_min_;
  return eta_min_ + (base_ - eta_min_) * (1 + std::cos(M_PI * double(step) / double(t_max_))) / 2;
}

LinearWarmup::LinearWarmup(std::shared_ptr<LRSchedule> after, int64_t warmup, double start)
    : after_(std::move(after)), warmup_(warmup), start_(start) {
  DS_CHECK(after_ != nullptr, ValueError, "LinearWarmup: the schedule after warm-up is null");
  DS_CHECK(warmup >= 0, ValueError, "LinearWarmup: warmup_steps must be >= 0, got ", warmup);
  DS_CHECK(start >= 0 && start <= 1, ValueError, "LinearWarmup: start_factor must be in [0, 1], got ",
           start);
}

double LinearWarmup::lr(int64_t step) const {
  if (step >= warmup_) return after_->lr(step - warmup_);
  const double f = start_ + (1 - start_) * double(step) / double(warmup_);
  return f * after_->lr(0);
}

OneCycleLR::OneCycleLR(double max_lr, int64_t total, double pct_start, double div, double final_div)
    : max_lr_(max_lr), initial_(max_lr / div), min_(max_lr / div / final_div), total_(total) {
  DS_CHECK(total > 1, ValueError, "OneCycleLR: total_steps must be > 1, got ", total);
  DS_CHECK(pct_start > 0 && pct_start < 1, ValueError,
           "OneCycleLR: pct_start must be in (0, 1), got ", pct_start);
  up_ = static_cast<int64_t>(pct_start * double(total)) - 1;
  DS_CHECK(up_ > 0, ValueError, "OneCycleLR: pct_start * total_steps is too small for a warm-up");
}

double OneCycleLR::lr(int64_t step) const {
  DS_CHECK(step >= 0 && step < total_, ValueError, "OneCycleLR: step ", step,
           " is outside [0, total_steps = ", total_, ")");
  auto cos_anneal = [](double from, double to, double pct) {
    return to + (from - to) / 2.0 * (std::cos(M_PI * pct) + 1);
  };
  if (step <= up_) return cos_anneal(initial_, max_lr_, double(step) / double(up_));
  const int64_t down = total_ - 1 - up_;
  return cos_anneal(max_lr_, min_, double(step - up_) / double(down));
}

}  // namespace ds::optim
