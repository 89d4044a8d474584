#include "ds/shape.h"

#include <sstream>

#include "ds/error.h"

namespace ds {

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return -1;
    n *= d;
  }
  return n;
}

bool is_static(const Shape& s) {
  for (int64_t d : s)
    if (d < 0) return false;
  return true;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) os << ", ";
    if (s[i] < 0)
      os << "None";
    else
      os << s[i];
  }
  os << "]";
  return os.str();
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const std::string& what) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else if (da == dyn || db == dyn) {
      out[i] = da == dyn ? db : da;  // a symbolic extent must match the static one
    } else {
      throw ShapeError(detail::cat(what, ": shapes ", shape_str(a), " and ", shape_str(b),
                                   " cannot be broadcast (axis ", i, ": ", da, " vs ", db, ")"));
    }
  }
  return out;
}

int normalize_axis(int64_t axis, int rank, const std::string& what) {
  const int64_t r = std::max(rank, 0);
  if (axis < -r || axis >= std::max<int64_t>(r, 1))
    throw ValueError(detail::cat(what, ": axis ", axis, " is out of range for rank ", rank,
                                 " (expected ", -r, " <= axis < ", r, ")"));
  return static_cast<int>(axis < 0 ? axis + r : axis);
}

}  // namespace ds
