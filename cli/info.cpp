#include <iostream>

#include "cli/commands.h"
#include "ds/ds.h"

namespace ds::cli {

std::vector<Command>& commands() {
  static std::vector<Command> c;
  return c;
}

namespace {
const CommandRegistrar info{{"info", "version, CPU features, threads, targets, components",
                             [](int, char**) {
                               std::cout << info_text();
                               return 0;
                             }}};
}  // namespace

}  // namespace ds::cli
