#include "tools/flags.hpp"

#include <charconv>
#include <cmath>
#include <sstream>

namespace xmesh::tools {

namespace {

int64_t parse_int(const std::string& flag, const std::string& text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size())
    throw usage_error(flag + ": expected an integer, got '" + text + "'");
  return v;
}

double parse_real(const std::string& flag, const std::string& text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(v))
    throw usage_error(flag + ": expected a number, got '" + text + "'");
  return v;
}

std::vector<std::string> split_commas(const std::string& flag, const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    if (item.empty()) throw usage_error(flag + ": empty item in list '" + text + "'");
    out.push_back(item);
  }
  if (out.empty()) throw usage_error(flag + ": empty list");
  return out;
}

}  // namespace

flags::flags(std::string command, std::string synopsis, std::vector<flag_spec> specs, int argc,
             char** argv)
    : command_(std::move(command)), synopsis_(std::move(synopsis)), specs_(std::move(specs)) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") throw help_request{usage()};
    const flag_spec* spec = nullptr;
    for (const auto& s : specs_)
      if (s.name == arg) spec = &s;
    if (spec == nullptr) throw usage_error("unknown argument '" + arg + "' (see --help)");
    if (values_.count(arg)) throw usage_error(arg + ": given twice");
    if (!spec->takes_value) {
      values_[arg] = "";
      continue;
    }
    if (i + 1 >= argc) throw usage_error(arg + ": missing value");
    values_[arg] = argv[++i];
  }
}

std::string flags::usage() const {
  std::ostringstream out;
  out << "usage: xmesh " << command_ << " " << synopsis_ << "\n";
  for (const auto& s : specs_)
    out << "  " << s.name << (s.takes_value ? " VALUE" : "") << "\n      " << s.help << "\n";
  return out.str();
}

std::string flags::str(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw usage_error(name + ": required");
  return it->second;
}

std::optional<std::string> flags::opt(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

int64_t flags::integer(const std::string& name, std::optional<int64_t> fallback) const {
  auto v = opt(name);
  if (!v) {
    if (!fallback) throw usage_error(name + ": required");
    return *fallback;
  }
  return parse_int(name, *v);
}

double flags::real(const std::string& name, std::optional<double> fallback) const {
  auto v = opt(name);
  if (!v) {
    if (!fallback) throw usage_error(name + ": required");
    return *fallback;
  }
  return parse_real(name, *v);
}

std::vector<int64_t> flags::integers(const std::string& name) const {
  std::vector<int64_t> out;
  for (const auto& item : split_commas(name, str(name))) out.push_back(parse_int(name, item));
  return out;
}

std::vector<double> flags::reals(const std::string& name) const {
  std::vector<double> out;
  for (const auto& item : split_commas(name, str(name))) out.push_back(parse_real(name, item));
  return out;
}

}  // namespace xmesh::tools
