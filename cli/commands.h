// Subcommands of the ds CLI register themselves here.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ds::cli {

struct Command {
  std::string name;
  std::string help;
  std::function<int(int argc, char** argv)> run;  // argv[0] is the command name
};

std::vector<Command>& commands();

struct CommandRegistrar {
  explicit CommandRegistrar(Command c) { commands().push_back(std::move(c)); }
};

}  // namespace ds::cli
