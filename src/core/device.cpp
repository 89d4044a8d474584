#include "ds/device.h"

#include "ds/error.h"

namespace ds {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  for (const char* prefix : {"cuda:", "gpu:"}) {
    const std::string p(prefix);
    if (s.rfind(p, 0) == 0) {
      try {
        return cuda(std::stoi(s.substr(p.size())));
      } catch (const std::exception&) {
      }
    }
  }
  throw ValueError("unknown device '" + s + "'; expected 'cpu', 'cuda' or 'cuda:N'");
}

std::string Device::str() const {
  return kind == DeviceKind::CPU ? "cpu" : "cuda:" + std::to_string(index);
}

}  // namespace ds
