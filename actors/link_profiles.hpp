// Emulated access links (deploy/netns.sh): a profile's rate, delay, jitter and loss each way,
// the built-in profiles, and a cluster file's `links:` section.
#pragma once

#include <map>
#include <string>

namespace YAML {
class Node;
}

namespace xmesh::actors {

/// One direction of a host's access link, as emulated by deploy/netns.sh.
struct link_direction {
  double rate_bits_s = 0;  // 0: unshaped
  double delay_s = 0;      // one way, mean
  double jitter_s = 0;     // uniform +- around the delay (packets are never reordered)
  double loss = 0;         // fraction of packets dropped
};

/// A host's access link: `up` from the host toward the network, `down` toward the host. A packet
/// from A to B sees A's up and B's down.
struct link_profile {
  link_direction up, down;
};

/// The profiles every cluster file knows (datacenter, wifi, 5g, lte); a file's `links:` section
/// adds or replaces profiles.
const std::map<std::string, link_profile>& builtin_link_profiles();

/// A cluster file's `links:` section (profile -> {up, down}) into `out`, over the built-ins;
/// errors name `origin` and the field.
void parse_links(const YAML::Node& links, const std::string& origin,
                 std::map<std::string, link_profile>& out);

}  // namespace xmesh::actors
