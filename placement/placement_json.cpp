#include "placement/placement_json.hpp"

#include <cstdint>
#include <stdexcept>

namespace xmesh::placement {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::invalid_argument(source + ": " + what);
}

// A short, single-line rendering of an offending value for error messages.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', true, json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

const json& member(const json& doc, const char* key, const std::string& source) {
  if (!doc.is_object()) fail(source, "expected a JSON object at the top level");
  auto it = doc.find(key);
  if (it == doc.end()) fail(source, std::string("missing \"") + key + "\"");
  if (!it->is_array()) fail(source, std::string("\"") + key + "\" must be an array");
  return *it;
}

std::vector<int32_t> int_list(const json& layer, const char* key, const std::string& where) {
  auto it = layer.find(key);
  if (it == layer.end() || !it->is_array())
    throw std::invalid_argument(where + ": \"" + key + "\" must be an array");
  std::vector<int32_t> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      throw std::invalid_argument(where + ": " + key + "[" + std::to_string(i) +
                                  "] is not an integer (got " + shown(v) + ")");
    out.push_back(v.get<int32_t>());
  }
  return out;
}

}  // namespace

load_matrix load_from_json(const json& doc, const std::string& source) {
  const auto& layers = member(doc, "load", source);
  load_matrix load;
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& row = layers[l];
    if (!row.is_array())
      fail(source, "load[" + std::to_string(l) + "] must be an array of numbers");
    std::vector<double> tokens;
    for (size_t e = 0; e < row.size(); ++e) {
      if (!row[e].is_number())
        fail(source, "load[" + std::to_string(l) + "][" + std::to_string(e) +
                         "] is not a number (got " + shown(row[e]) + ")");
      double v = row[e].get<double>();
      if (v < 0)
        fail(source, "load[" + std::to_string(l) + "][" + std::to_string(e) + "] is negative (" +
                         shown(row[e]) + ")");
      tokens.push_back(v);
    }
    load.push_back(std::move(tokens));
  }
  return load;
}

placement placement_from_json(const json& doc, const std::string& source) {
  const auto& layers = member(doc, "layers", source);
  placement out;
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string where = source + ": layers[" + std::to_string(l) + "]";
    if (!layers[l].is_object()) throw std::invalid_argument(where + " must be an object");
    layer_placement layer;
    layer.expert_of_slot = int_list(layers[l], "expert_of_slot", where);
    layer.host_of_slot = int_list(layers[l], "host_of_slot", where);
    out.layers.push_back(std::move(layer));
  }
  return out;
}

json to_json(const placement& p) {
  json layers = json::array();
  for (const auto& l : p.layers)
    layers.push_back({{"expert_of_slot", l.expert_of_slot}, {"host_of_slot", l.host_of_slot}});
  return {{"layers", std::move(layers)}};
}

json to_json(const plan_report& report) {
  json layers = json::array();
  for (size_t l = 0; l < report.layers.size(); ++l) {
    const auto& r = report.layers[l];
    layers.push_back({{"layer", l},
                      {"balancedness_before", r.balancedness_before},
                      {"balancedness_after", r.balancedness_after},
                      {"max_time_before", r.max_time_before},
                      {"max_time_after", r.max_time_after},
                      {"moved_replicas", r.moved_replicas}});
  }
  return {{"before", report.had_current ? "current" : "naive"},
          {"balancedness_before", report.balancedness_before},
          {"balancedness_after", report.balancedness_after},
          {"balance_gained", report.balancedness_after - report.balancedness_before},
          {"moved_replicas", report.moved_replicas},
          {"bytes_moved", report.bytes_moved},
          {"layers", std::move(layers)}};
}

}  // namespace xmesh::placement
