#include "actors/coordinator.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace xmesh::actors {

coordinator_state::coordinator_state(const cluster_config& cluster, const placement_table& planned,
                                     int64_t expert_bytes, std::string model)
    : timeout_(static_cast<int64_t>(cluster.heartbeat.timeout_s * 1000)),
      rejoin_s_(cluster.heartbeat.rejoin_s),
      model_(std::move(model)),
      scheme_(cluster.transport == "ucx"     ? "ucx-worker://"
              : cluster.transport == "local" ? "local://"
                                             : "tcp://"),
      table_(without_replicas(planned)),
      expert_bytes_(expert_bytes) {
  for (const auto& n : cluster.nodes) {
    expected_.push_back(n.name);
    std::vector<std::string> roles;
    for (auto r : n.roles)
      roles.push_back(r == role::coordinator ? "coordinator"
                      : r == role::head      ? "head"
                                             : "experts");
    listed_[n.name] = {roles, n.has(role::experts) || n.has(role::head)
                                  ? n.data_address(cluster.transport)
                                  : std::string()};
    if (!n.has(role::experts)) continue;
    capacity_[n.name] = n.memory_budget_bytes > 0 && expert_bytes > 0
                            ? n.memory_budget_bytes / expert_bytes
                            : std::numeric_limits<int64_t>::max();
    assignment_[n.name] = hosted_experts(planned, n.name);
  }
}

std::string coordinator_state::admit(const node_info& info) const {
  if (!model_.empty() && !model::same_model(info.model, model_))
    return "node '" + info.name + "' serves model " + info.model + " but the cluster serves " +
           model_;
  const bool experts =
      std::find(info.roles.begin(), info.roles.end(), "experts") != info.roles.end();
  const bool listed = std::find(expected_.begin(), expected_.end(), info.name) != expected_.end();
  if (!listed && !experts)
    return "node '" + info.name + "' is not in the cluster file; only expert nodes may join";
  // A name belongs to one node: a listed one keeps its file's roles and address, and a joined
  // one's address while it is alive (a restart comes back at the same address).
  if (listed) {
    const auto& [roles, address] = listed_.at(info.name);
    auto sorted = [](std::vector<std::string> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    // (A UCX node's address is its worker's, new at every start: only the roles compare.)
    const bool comparable = address.rfind("ucx://", 0) != 0;
    if (sorted(roles) != sorted(info.roles) ||
        (comparable && !address.empty() && address != info.data_address))
      return "node '" + info.name + "' is in the cluster file with other roles or address; " +
             "choose another name";
  } else if (auto it = members_.find(info.name);
             it != members_.end() && !dead_.count(info.name) &&
             it->second.info.data_address != info.data_address) {
    return "node name '" + info.name + "' is taken by a live node at " +
           it->second.info.data_address;
  }
  if (experts && info.data_address.rfind(scheme_, 0) != 0)
    return "node '" + info.name + "' serves experts at '" + info.data_address +
           "' but the cluster's data plane uses " + scheme_ + " addresses";
  return {};
}

bool coordinator_state::register_node(const node_info& info) {
  const auto& name = info.name;
  const uint64_t version = table_.version;
  const bool back_from_dead = dead_.erase(name) != 0;
  drained_.erase(name);
  members_[name] = {info, clock::now()};
  // A restarted coordinator continues after the newest version any node has seen, so nodes
  // never ignore its tables as stale (nor take two different tables of one version).
  const bool raised = info.version >= table_.version;
  if (raised) table_.version = info.version;
  if (std::find(info.roles.begin(), info.roles.end(), "experts") != info.roles.end()) {
    if (node_index(table_, name) < 0) {  // joining: not in the cluster file
      table_ = with_node(table_, name, info.data_address);
      capacity_[name] = info.memory_budget_bytes > 0 && expert_bytes_ > 0
                            ? info.memory_budget_bytes / expert_bytes_
                            : std::numeric_limits<int64_t>::max();
    }
    resident_[name] = {info.resident.begin(), info.resident.end()};
    if (int32_t n = node_index(table_, name); table_.addresses[n] != info.data_address) {
      table_.addresses[n] = info.data_address;  // where heads reach it from now on
      ++table_.version;
    }
    if (back_from_dead && rejoin_s_ > 0) {
      rejoining_[name] = clock::now();
    } else if (rejoining_.count(name)) {
      // Registered again while it waits (beats answered before its first registration arrived):
      // it keeps waiting, with what it reports now.
    } else {
      rejoining_.erase(name);
      auto n = node_index(table_, name);
      if (hosted_experts(table_, name) !=
          std::vector<int64_t>(resident_[name].begin(), resident_[name].end()))
        table_ = with_column(table_, n, info.resident);
    }
  }
  if (raised && table_.version == info.version) ++table_.version;
  return table_.version != version;
}

bool coordinator_state::heartbeat(const std::string& name) {
  auto it = members_.find(name);
  if (it == members_.end() || dead_.count(name)) return false;
  it->second.last_beat = clock::now();
  return true;
}

cluster_status coordinator_state::status() const {
  cluster_status s;
  s.placement_version = table_.version;
  for (const auto& name : expected_)
    if (members_.count(name) && !dead_.count(name))
      s.registered.push_back(name);
    else if (!members_.count(name) && !drained_.count(name) && !dead_.count(name))
      s.missing.push_back(name);
  for (const auto& [name, m] : members_)  // joined: not in the cluster file
    if (!dead_.count(name) &&
        std::find(expected_.begin(), expected_.end(), name) == expected_.end())
      s.registered.push_back(name);
  for (const auto& name : silent_nodes(timeout_))
    if (!dead_.count(name)) s.silent.push_back(name);
  s.dead.assign(dead_.begin(), dead_.end());
  for (const auto& [name, since] : rejoining_) s.rejoining.push_back(name);
  s.drained.assign(drained_.begin(), drained_.end());
  s.deaths = deaths_;
  s.rejoins = rejoins_;
  return s;
}

std::map<std::string, double> coordinator_state::heartbeat_ages() const {
  std::map<std::string, double> out;
  auto now = clock::now();
  for (const auto& [name, m] : members_)
    if (!dead_.count(name)) out[name] = std::chrono::duration<double>(now - m.last_beat).count();
  return out;
}

std::vector<std::string> coordinator_state::silent_nodes(std::chrono::milliseconds timeout) const {
  std::vector<std::string> out;
  auto now = clock::now();
  for (const auto& [name, m] : members_)
    if (now - m.last_beat > timeout) out.push_back(name);
  return out;
}

void coordinator_state::checked_liveness() {
  // The coordinator itself stalled (stopped, starved) for longer than half the timeout: the
  // silence it sees is its own, so every member gets a fresh start instead of a death.
  const auto now = clock::now();
  if (now - last_check_ > timeout_ / 2)
    for (auto& [name, m] : members_) m.last_beat = std::max(m.last_beat, now - timeout_ / 2);
  last_check_ = now;
}

std::vector<std::string> coordinator_state::newly_dead() const {
  std::vector<std::string> out;
  for (const auto& name : silent_nodes(timeout_))
    if (!dead_.count(name)) out.push_back(name);
  return out;
}

std::vector<int64_t> coordinator_state::declare_dead(const std::string& name) {
  dead_.insert(name);
  ++deaths_;
  died_[name].push_back(clock::now());
  rejoining_.erase(name);
  if (auto it = resident_.find(name); it != resident_.end()) {
    // What it held when last seen alive is what it loads if it starts again.
    if (!it->second.empty()) assignment_[name] = {it->second.begin(), it->second.end()};
    it->second.clear();
  }
  if (int32_t n = node_index(table_, name); n >= 0 && !hosted_experts(table_, name).empty())
    table_ = with_column(table_, n, {});
  return orphaned_experts(table_);
}

coordinator_state::clock::duration coordinator_state::rejoin_wait(const std::string& name) const {
  // Each death within the last minute doubles the wait (capped at a minute): a node that keeps
  // dropping off serves ever less often instead of moving the placement every few seconds.
  int recent = 0;
  if (auto it = died_.find(name); it != died_.end())
    for (auto t : it->second) recent += clock::now() - t < std::chrono::minutes(1);
  double wait = std::min(60.0, rejoin_s_ * std::pow(2.0, std::max(0, recent - 1)));
  return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(wait));
}

std::vector<std::string> coordinator_state::finish_rejoins() {
  std::vector<std::string> done;
  for (auto it = rejoining_.begin(); it != rejoining_.end();) {
    const auto& name = it->first;
    if (clock::now() - it->second < rejoin_wait(name)) {
      ++it;
      continue;
    }
    const auto& held = resident_[name];
    table_ = with_column(table_, node_index(table_, name), {held.begin(), held.end()});
    ++rejoins_;
    done.push_back(name);
    it = rejoining_.erase(it);
  }
  return done;
}

bool coordinator_state::settled() const {
  const auto now = clock::now();
  // A node that fetched its assignment is loading it: wait for it (up to two minutes).
  for (const auto& [name, since] : coming_)
    if (!members_.count(name) && now - since < std::chrono::minutes(2)) return false;
  if (now - started_ > std::chrono::seconds(10)) return true;
  for (const auto& [name, room] : capacity_)
    if (!members_.count(name) && !drained_.count(name)) return false;
  return true;
}

bool coordinator_state::placeable(const std::string& name) const {
  return capacity_.count(name) && members_.count(name) && !dead_.count(name) &&
         !rejoining_.count(name) && !draining_.count(name) && node_index(table_, name) >= 0;
}

std::string coordinator_state::roomiest_node_for(int64_t layer, int64_t expert) const {
  std::string best;
  int64_t best_free = 0;
  for (const auto& [name, room] : capacity_) {
    if (!placeable(name) || table_.hosts(node_index(table_, name), layer, expert)) continue;
    int64_t free = room - resident(name);
    if (free > best_free) best = name, best_free = free;
  }
  return best;
}

std::map<std::string, caf::actor> coordinator_state::members_with(const std::string& role) const {
  std::map<std::string, caf::actor> out;
  for (const auto& [name, m] : members_)
    if (!dead_.count(name) &&
        std::find(m.info.roles.begin(), m.info.roles.end(), role) != m.info.roles.end() &&
        m.info.node)
      out[name] = m.info.node;
  return out;
}

caf::actor coordinator_state::actor_of(const std::string& name) const {
  auto it = members_.find(name);
  return it == members_.end() || dead_.count(name) ? caf::actor{} : it->second.info.node;
}

placement_table coordinator_state::assignment(const std::string& name) {
  coming_[name] = clock::now();
  auto it = assignment_.find(name);
  int32_t n = node_index(table_, name);
  // A node restarted before it was declared dead loads what the live table still gives it.
  if (n < 0 || !hosted_experts(table_, name).empty()) return table_;
  if (it == assignment_.end()) return table_;
  auto t = with_column(table_, n, it->second);
  t.version = table_.version;  // not a version of the live placement
  return t;
}

std::vector<move_order> coordinator_state::plan_drain(const std::string& name) {
  auto fail = [&](const std::string& why) {
    throw std::runtime_error("cannot drain '" + name + "': " + why);
  };
  if (!capacity_.count(name)) fail("it is not an expert node of this cluster");
  if (!members_.count(name) || dead_.count(name)) fail("it is not a live member");
  if (members_.at(name).info.roles != std::vector<std::string>{"experts"})
    fail("it has other roles than experts (draining stops the node)");
  if (draining_.count(name)) fail("it is being drained already");
  std::map<std::string, int64_t> room;  // free slots left on each placeable node as orders add up
  for (const auto& [other, cap] : capacity_)
    if (other != name && placeable(other)) room[other] = cap - resident(other);
  std::vector<move_order> orders;
  for (int64_t slot : hosted_experts(table_, name)) {
    move_order o;
    o.layer = slot / table_.num_experts;
    o.expert = slot % table_.num_experts;
    o.from = name;
    if (table_.replicas(o.layer, o.expert).size() > 1) {
      o.kind = move_order::retire;
    } else {
      o.kind = move_order::migrate;
      int64_t best = 0;
      for (const auto& [other, free] : room)
        if (free > best && !table_.hosts(node_index(table_, other), o.layer, o.expert))
          o.to = other, best = free;
      if (o.to.empty())
        fail("expert " + std::to_string(o.expert) + " of layer " + std::to_string(o.layer) +
             " has its only replica there and no other expert node has room for it");
      --room[o.to];
    }
    orders.push_back(o);
  }
  draining_.insert(name);
  return orders;
}

void coordinator_state::end_drain(const std::string& name, bool stopped) {
  draining_.erase(name);
  if (!stopped) return;
  members_.erase(name);
  resident_.erase(name);
  rejoining_.erase(name);
  assignment_.erase(name);  // restarted later, it joins holding nothing
  dead_.erase(name);
  drained_.insert(name);
  if (int32_t n = node_index(table_, name); n >= 0 && !hosted_experts(table_, name).empty())
    table_ = with_column(table_, n, {});
}

std::string coordinator_state::check(const move_order& o) const {
  const std::string what =
      "expert " + std::to_string(o.expert) + " of layer " + std::to_string(o.layer);
  if (o.layer < 0 || o.layer >= table_.num_layers)
    return "layer " + std::to_string(o.layer) + " is out of range (the model has " +
           std::to_string(table_.num_layers) + ")";
  if (o.expert < 0 || o.expert >= table_.num_experts)
    return "expert " + std::to_string(o.expert) + " is out of range (the model has " +
           std::to_string(table_.num_experts) + ")";
  const bool adds = o.kind != move_order::retire, removes = o.kind != move_order::replicate;
  int32_t to = node_index(table_, o.to), from = node_index(table_, o.from);
  if (adds && to < 0) return "'" + o.to + "' is not an expert node of this cluster";
  if (removes && from < 0) return "'" + o.from + "' is not an expert node of this cluster";
  if (adds && removes && to == from) return "source and destination are the same node";
  if (adds && table_.hosts(to, o.layer, o.expert)) return "'" + o.to + "' already hosts " + what;
  if (removes && !table_.hosts(from, o.layer, o.expert))
    return "'" + o.from + "' does not host " + what;
  if (o.kind == move_order::retire && table_.replicas(o.layer, o.expert).size() < 2)
    return "it would leave " + what + " without a replica";
  if (adds && !members_.count(o.to)) return "'" + o.to + "' has not registered";
  if (adds && dead_.count(o.to)) return "'" + o.to + "' is dead";
  if (adds && rejoining_.count(o.to))
    return "'" + o.to + "' is rejoining (it takes replicas after steady heartbeats)";
  if (adds && draining_.count(o.to)) return "'" + o.to + "' is being drained";
  if (adds && resident(o.to) + 1 > capacity(o.to))
    return "'" + o.to + "' memory budget holds " + std::to_string(capacity(o.to)) + " experts of " +
           std::to_string(expert_bytes_) + " bytes and " + std::to_string(resident(o.to)) +
           " are resident";
  return {};
}

void coordinator_state::reserve(const move_order& o) {
  resident_[o.to].insert(o.layer * table_.num_experts + o.expert);
}

void coordinator_state::unreserve(const move_order& o) {
  resident_[o.to].erase(o.layer * table_.num_experts + o.expert);
}

const placement_table& coordinator_state::add_replica(const move_order& o) {
  table_ = with_replica(table_, o.layer, o.expert, node_index(table_, o.to), true);
  bytes_moved_ += expert_bytes_;
  ++replications_;
  return table_;
}

const placement_table& coordinator_state::remove_replica(const move_order& o) {
  // A node declared dead meanwhile has lost all its replicas already.
  if (int32_t from = node_index(table_, o.from); table_.hosts(from, o.layer, o.expert))
    table_ = with_replica(table_, o.layer, o.expert, from, false);
  return table_;
}

void coordinator_state::release(const move_order& o) {
  resident_[o.from].erase(o.layer * table_.num_experts + o.expert);
  ++retirements_;
}

int64_t coordinator_state::resident(const std::string& name) const {
  auto it = resident_.find(name);
  return it == resident_.end() ? 0 : static_cast<int64_t>(it->second.size());
}

int64_t coordinator_state::capacity(const std::string& name) const {
  auto it = capacity_.find(name);
  return it == capacity_.end() ? 0 : it->second;
}

placement_report coordinator_state::report() const {
  return {table_,       bytes_moved_,  replications_, retirements_, failed_moves_,
          rebalancing_, balancedness_, tokens_,       rebalances_,  automatic_};
}

}  // namespace xmesh::actors
