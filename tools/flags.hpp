// A small, strict command-line flag parser shared by every `xmesh` sub-command.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace xmesh::tools {

/// Thrown for a bad command line; `main` prints it as one line and exits with status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Thrown by `flags` when `--help` is given; `main` prints the usage and exits 0.
struct help_request {
  std::string usage;
};

/// One accepted flag: `--name VALUE` when `takes_value`, else a switch.
struct flag_spec {
  std::string name;
  bool takes_value;
  std::string help;
};

/// Parses `argv` against a fixed list of flags; unknown flags, missing values and repeats throw.
class flags {
 public:
  flags(std::string command, std::string synopsis, std::vector<flag_spec> specs, int argc,
        char** argv);

  [[nodiscard]] std::string usage() const;

  [[nodiscard]] bool has(const std::string& name) const { return values_.count(name) != 0; }
  /// The value of a flag that must be present.
  [[nodiscard]] std::string str(const std::string& name) const;
  [[nodiscard]] std::optional<std::string> opt(const std::string& name) const;
  [[nodiscard]] int64_t integer(const std::string& name,
                                std::optional<int64_t> fallback = {}) const;
  [[nodiscard]] double real(const std::string& name, std::optional<double> fallback = {}) const;
  /// A comma-separated list of integers, e.g. `--tokens 1,2,3`.
  [[nodiscard]] std::vector<int64_t> integers(const std::string& name) const;
  [[nodiscard]] std::vector<double> reals(const std::string& name) const;

 private:
  std::string command_;
  std::string synopsis_;
  std::vector<flag_spec> specs_;
  std::map<std::string, std::string> values_;
};

}  // namespace xmesh::tools
