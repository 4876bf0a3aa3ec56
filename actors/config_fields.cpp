#include "actors/config_fields.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace xmesh::actors {

namespace {

// A plain non-negative decimal ("0.5", "30"), or nothing.
std::optional<double> decimal(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos) return {};
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  return {};
}

// `text` as a decimal with one of `units` (suffix, scale) or none; the first matching suffix
// decides, so longer ones come first ("ms" before "s").
std::optional<double> with_unit(const std::string& text,
                                std::initializer_list<std::pair<const char*, double>> units) {
  for (const auto& [suffix, scale] : units) {
    const std::string u = suffix;
    if (text.size() > u.size() && text.compare(text.size() - u.size(), u.size(), u) == 0) {
      auto v = decimal(text.substr(0, text.size() - u.size()));
      return v ? std::optional(*v * scale) : std::nullopt;
    }
  }
  return decimal(text);
}

// Edit distance, to suggest the key a typo meant.
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

void fail(const std::string& origin, const std::string& field, const std::string& what) {
  throw std::runtime_error(origin + ": " + field + ": " + what);
}

int64_t parse_bytes(const std::string& origin, const std::string& field, const std::string& text) {
  static const std::pair<const char*, int64_t> units[] = {{"GiB", 1ll << 30}, {"MiB", 1ll << 20},
                                                          {"KiB", 1ll << 10}, {"GB", 1000000000ll},
                                                          {"MB", 1000000ll},  {"B", 1}};
  for (auto [suffix, scale] : units) {
    std::string s(suffix);
    if (text.size() > s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0) {
      try {
        size_t used = 0;
        double v = std::stod(text.substr(0, text.size() - s.size()), &used);
        if (v >= 0 && used == text.size() - s.size())
          return static_cast<int64_t>(v * static_cast<double>(scale));
      } catch (const std::exception&) {
      }
      break;
    }
  }
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    if (v >= 0 && used == text.size()) return v;
  } catch (const std::exception&) {
  }
  fail(origin, field, "expected a size like 512MiB or 2GiB, got '" + text + "'");
}

double parse_seconds(const std::string& origin, const std::string& field, const std::string& text) {
  if (auto v = with_unit(text, {{"ms", 1e-3}, {"s", 1}, {"m", 60}})) return *v;
  fail(origin, field, "expected a duration like 500ms or 30s, got '" + text + "'");
}

double parse_rate(const std::string& origin, const std::string& field, const std::string& text) {
  if (auto v = with_unit(text, {{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}))
    return *v;
  fail(origin, field, "expected a rate like 50mbit or 1gbit, got '" + text + "'");
}

double parse_loss(const std::string& origin, const std::string& field, const std::string& text) {
  std::string num = text;
  double scale = 1;
  if (!num.empty() && num.back() == '%') num.pop_back(), scale = 0.01;
  if (num.empty() || num.find_first_not_of("0123456789.") != std::string::npos)
    fail(origin, field, "expected a loss like 0.5% or 0.005, got '" + text + "'");
  double v = std::stod(num) * scale;
  if (v > 1) fail(origin, field, "loss must be at most 100%");
  return v;
}

uint16_t port(const YAML::Node& n, const std::string& origin, const std::string& field) {
  if (!n) fail(origin, field, "missing");
  auto v = scalar<int64_t>(n, origin, field);
  if (v < 1 || v > 65535) fail(origin, field, "port out of range: " + std::to_string(v));
  return static_cast<uint16_t>(v);
}

void check_keys(YAML::Node m, std::initializer_list<const char*> known, const std::string& origin,
                const std::string& at) {
  for (auto it = m.begin(); it != m.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (std::any_of(known.begin(), known.end(), [&](const char* k) { return key == k; })) continue;
    const char* nearest = *std::min_element(known.begin(), known.end(), [&](auto x, auto y) {
      return distance(key, x) < distance(key, y);
    });
    fail(origin, at.empty() ? key : at + "." + key,
         std::string("unknown key (did you mean '") + nearest + "'?)");
  }
}

}  // namespace xmesh::actors
