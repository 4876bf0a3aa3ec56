#include "actors/link_profiles.hpp"

#include "actors/config_fields.hpp"

namespace xmesh::actors {

namespace {

link_direction parse_direction(YAML::Node d, const std::string& origin, const std::string& at) {
  if (!d.IsMap()) fail(origin, at, "expected a mapping (rate, delay, jitter, loss)");
  for (auto it = d.begin(); it != d.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (key != "rate" && key != "delay" && key != "jitter" && key != "loss")
      fail(origin, at + "." + key, "unknown setting (rate, delay, jitter, loss)");
  }
  auto text = [&](const char* key) { return scalar<std::string>(d[key], origin, at + "." + key); };
  link_direction out;
  if (d["rate"]) out.rate_bits_s = parse_rate(origin, at + ".rate", text("rate"));
  if (d["delay"]) out.delay_s = parse_seconds(origin, at + ".delay", text("delay"));
  if (d["jitter"]) out.jitter_s = parse_seconds(origin, at + ".jitter", text("jitter"));
  if (d["loss"]) out.loss = parse_loss(origin, at + ".loss", text("loss"));
  if (out.jitter_s > out.delay_s)
    fail(origin, at + ".jitter", "must not exceed the delay (packets are not reordered)");
  return out;
}

}  // namespace

const std::map<std::string, link_profile>& builtin_link_profiles() {
  // Typical access links, one way (a round trip between two edge hosts crosses four directions).
  // Orders of magnitude from public measurements: datacenter RTTs of tens to hundreds of
  // microseconds (Google's Jupiter / Swift papers, SIGCOMM 2015 and 2020); home and office WiFi
  // adding a few milliseconds each way with 802.11ac rates (FCC Measuring Broadband America);
  // 5G and LTE median RTTs of roughly 20-30 ms and 40-60 ms with the down/up speeds of Ookla's and
  // Opensignal's mobile reports (2022-2023). Loss is the residual loss seen above the radio's
  // retransmissions. Adjust them in a cluster file's `links:` section for a given deployment.
  static const std::map<std::string, link_profile> all = {
      {"datacenter", {{10e9, 25e-6, 0, 0}, {10e9, 25e-6, 0, 0}}},
      {"wifi", {{50e6, 3e-3, 1e-3, 0.001}, {100e6, 3e-3, 1e-3, 0.001}}},
      {"5g", {{30e6, 10e-3, 2e-3, 0.001}, {200e6, 10e-3, 2e-3, 0.001}}},
      {"lte", {{10e6, 25e-3, 5e-3, 0.005}, {30e6, 25e-3, 5e-3, 0.005}}},
  };
  return all;
}

void parse_links(const YAML::Node& l, const std::string& origin,
                 std::map<std::string, link_profile>& out) {
  if (!l.IsMap()) fail(origin, "links", "expected a mapping profile -> {up, down}");
  for (auto it = l.begin(); it != l.end(); ++it) {
    auto name = scalar<std::string>(it->first, origin, "links");
    YAML::Node p = it->second;  // by value: yaml-cpp iterators must not outlive their node
    const std::string at = "links." + name;
    if (!p.IsMap()) fail(origin, at, "expected a mapping (up, down)");
    for (auto k = p.begin(); k != p.end(); ++k)
      if (k->first.as<std::string>() != "up" && k->first.as<std::string>() != "down")
        fail(origin, at + "." + k->first.as<std::string>(), "unknown direction (up, down)");
    link_profile profile;
    if (p["up"]) profile.up = parse_direction(p["up"], origin, at + ".up");
    if (p["down"]) profile.down = parse_direction(p["down"], origin, at + ".down");
    out[name] = profile;
  }
}

}  // namespace xmesh::actors
