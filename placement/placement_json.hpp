// JSON forms of loads, placements and plan reports (the files `xmesh plan` reads and writes).
// Parsing checks shapes and types and throws std::invalid_argument with one line naming the
// source and the field; value ranges are checked by the planner itself.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "placement/planner.hpp"

namespace xmesh::placement {

/// Reads `{"load": [[tokens per expert] per layer]}`; `source` names the file in errors.
[[nodiscard]] load_matrix load_from_json(const nlohmann::json& doc, const std::string& source);

/// Reads `{"layers": [{"expert_of_slot": [...], "host_of_slot": [...]}]}`.
[[nodiscard]] placement placement_from_json(const nlohmann::json& doc, const std::string& source);

/// Writes a placement in the form placement_from_json reads.
[[nodiscard]] nlohmann::json to_json(const placement& p);

/// Writes a plan report: per-layer and overall balancedness before and after, moves and bytes.
[[nodiscard]] nlohmann::json to_json(const plan_report& report);

}  // namespace xmesh::placement
