// How a device backend plugs into Tensor: it registers, at load time, the
// allocator for its storage and the copy between its memory and the CPU's.
// Without a registered backend a device is "not in this build".
#pragma once

#include <functional>
#include <memory>

#include "ds/tensor.h"

namespace ds {

struct DeviceHooks {
  std::function<std::shared_ptr<Storage>(size_t nbytes, Device device)> allocate;
  // Copies contiguous `src` into contiguous `dst` of the same shape and dtype;
  // at least one of them is on the hooks' device.
  std::function<void(const Tensor& src, Tensor& dst)> copy;
  // A contiguous copy of a strided tensor on the hooks' device, made there.
  std::function<Tensor(const Tensor& src)> contiguous;
};

void register_device_hooks(DeviceKind kind, DeviceHooks hooks);
// The hooks of `kind`, or nullptr when no backend registered them.
const DeviceHooks* device_hooks(DeviceKind kind);

}  // namespace ds
