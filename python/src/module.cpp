#include <nanobind/nanobind.h>

#include "ds/ds.h"

namespace nb = nanobind;

NB_MODULE(_core, m) {
  m.def("info", &ds::info_text);
}
