// The ds command: info, and the subcommands registered in cli/*.cpp.
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "ds/ds.h"

namespace {

int usage(std::ostream& os) {
  os << "usage: ds <command> [options]\n\ncommands:\n";
  for (const auto& c : ds::cli::commands()) os << "  " << c.name << "\t" << c.help << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help"))
    return usage(argc < 2 ? std::cerr : std::cout);
  for (const auto& c : ds::cli::commands()) {
    if (c.name != argv[1]) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      std::cerr << "ds " << c.name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "ds: unknown command '" << argv[1] << "'\n";
  return usage(std::cerr);
}
