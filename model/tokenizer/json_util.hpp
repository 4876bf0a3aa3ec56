// Small checked accessors for tokenizer.json values; errors name the field.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "model/tokenizer/pipeline.hpp"

namespace xmesh::tokenizer {

/// The string member `key` of `j`; throws config_error naming `where.key` when absent or mistyped.
inline std::string json_string(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw config_error(where + "." + key + ": expected a string");
  return it->get<std::string>();
}

/// The boolean member `key`, or `fallback` when absent or null.
inline bool json_bool(const nlohmann::json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw config_error(std::string(key) + ": expected true or false");
  return it->get<bool>();
}

/// The "type" member of a component object, e.g. "BPE" or "ByteLevel".
inline std::string json_type(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw config_error(where + ": expected an object");
  return json_string(j, "type", where);
}

}  // namespace xmesh::tokenizer
