// The cluster file's field grammar, shared by its sections: typed scalars, sizes, durations,
// rates, losses and ports, and mappings whose keys are checked. Every error is one line naming
// the file and the field ("cluster.yaml: heartbeat.period: ...").
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace xmesh::actors {

/// Throws "ORIGIN: FIELD: WHAT".
[[noreturn]] void fail(const std::string& origin, const std::string& field,
                       const std::string& what);

/// `n` as a T, or "FIELD: has the wrong type".
template <class T>
T scalar(const YAML::Node& n, const std::string& origin, const std::string& field) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    fail(origin, field, "has the wrong type");
  }
}

/// "512MiB", "2GiB", "1GB" or a plain number of bytes.
int64_t parse_bytes(const std::string& origin, const std::string& field, const std::string& text);
/// "250ms", "30s", "2m" or a plain number of seconds.
double parse_seconds(const std::string& origin, const std::string& field, const std::string& text);
/// "50mbit", "1gbit", "800kbit" or a plain number of bits per second.
double parse_rate(const std::string& origin, const std::string& field, const std::string& text);
/// "0.5%" or a fraction in [0, 1].
double parse_loss(const std::string& origin, const std::string& field, const std::string& text);
/// A TCP port, 1..65535 ("missing" when `n` is absent).
uint16_t port(const YAML::Node& n, const std::string& origin, const std::string& field);

/// Every key of mapping `m` must be one of `known`; a typo names the nearest valid key.
void check_keys(YAML::Node m, std::initializer_list<const char*> known, const std::string& origin,
                const std::string& at);

}  // namespace xmesh::actors
