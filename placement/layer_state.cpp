#include "placement/layer_state.hpp"

#include <algorithm>

namespace xmesh::placement {

int32_t layer_problem::max_replicas(int32_t e) const {
  int32_t n = 0;
  for (int32_t h = 0; h < num_hosts(); ++h)
    if (hosts[static_cast<size_t>(h)].slots > 0 && allowed(h, e)) ++n;
  return n;
}

layer_state::layer_state(const layer_problem& problem)
    : problem_(&problem),
      experts_on_(static_cast<size_t>(problem.num_hosts())),
      hosts_of_(static_cast<size_t>(problem.num_experts())),
      pos_(static_cast<size_t>(problem.num_hosts()) * static_cast<size_t>(problem.num_experts()),
           -1),
      count_(static_cast<size_t>(problem.num_experts()), 0),
      time_(static_cast<size_t>(problem.num_hosts()), 0.0) {}

layer_state::layer_state(const layer_problem& problem, const layer_placement& layer)
    : layer_state(problem) {
  for (size_t s = 0; s < layer.expert_of_slot.size(); ++s)
    attach(layer.host_of_slot[s], layer.expert_of_slot[s]);
  refresh_times();
}

int32_t layer_state::free_slots(int32_t h) const {
  return problem_->hosts[static_cast<size_t>(h)].slots -
         static_cast<int32_t>(experts_on_[static_cast<size_t>(h)].size());
}

double layer_state::replica_load(int32_t e) const {
  auto c = count_[static_cast<size_t>(e)];
  return c > 0 ? problem_->load[static_cast<size_t>(e)] / c : 0.0;
}

void layer_state::attach(int32_t h, int32_t e) {
  auto& on = experts_on_[static_cast<size_t>(h)];
  pos_[index(h, e)] = static_cast<int32_t>(on.size());
  on.push_back(e);
  hosts_of_[static_cast<size_t>(e)].push_back(h);
  ++count_[static_cast<size_t>(e)];
}

void layer_state::detach(int32_t h, int32_t e) {
  auto& on = experts_on_[static_cast<size_t>(h)];
  auto at = static_cast<size_t>(pos_[index(h, e)]);
  on[at] = on.back();  // swap-remove, fixing the moved expert's position
  pos_[index(h, on[at])] = static_cast<int32_t>(at);
  on.pop_back();
  pos_[index(h, e)] = -1;
  auto& hosts = hosts_of_[static_cast<size_t>(e)];
  hosts.erase(std::find(hosts.begin(), hosts.end(), h));
  --count_[static_cast<size_t>(e)];
}

// Re-weighs the replicas of e that stay when its count goes from old_count to new_count.
void layer_state::shift_replicas(int32_t e, int32_t old_count, int32_t new_count) {
  double w = problem_->load[static_cast<size_t>(e)];
  double delta = w / new_count - w / old_count;
  for (int32_t k : hosts_of_[static_cast<size_t>(e)])
    time_[static_cast<size_t>(k)] += delta / problem_->hosts[static_cast<size_t>(k)].speed;
}

void layer_state::add(int32_t h, int32_t e) {
  int32_t c = count(e);
  if (c > 0) shift_replicas(e, c, c + 1);
  attach(h, e);
  time_[static_cast<size_t>(h)] += replica_load(e) / problem_->hosts[static_cast<size_t>(h)].speed;
}

void layer_state::relocate(int32_t e, int32_t from, int32_t to) {
  double u = replica_load(e);
  detach(from, e);
  attach(to, e);
  time_[static_cast<size_t>(from)] -= u / problem_->hosts[static_cast<size_t>(from)].speed;
  time_[static_cast<size_t>(to)] += u / problem_->hosts[static_cast<size_t>(to)].speed;
}

void layer_state::retarget(int32_t h, int32_t a, int32_t b) {
  double speed = problem_->hosts[static_cast<size_t>(h)].speed;
  time_[static_cast<size_t>(h)] -= replica_load(a) / speed;
  detach(h, a);
  int32_t ca = count(a);
  shift_replicas(a, ca + 1, ca);
  add(h, b);
}

void layer_state::refresh_times() {
  std::fill(time_.begin(), time_.end(), 0.0);
  for (int32_t h = 0; h < problem_->num_hosts(); ++h) {
    double t = 0.0;
    for (int32_t e : experts_on_[static_cast<size_t>(h)]) t += replica_load(e);
    time_[static_cast<size_t>(h)] = t / problem_->hosts[static_cast<size_t>(h)].speed;
  }
}

layer_placement layer_state::to_layer() const {
  layer_placement out;
  for (int32_t h = 0; h < problem_->num_hosts(); ++h) {
    auto experts = experts_on_[static_cast<size_t>(h)];
    std::sort(experts.begin(), experts.end());
    for (int32_t e : experts) {
      out.expert_of_slot.push_back(e);
      out.host_of_slot.push_back(h);
    }
  }
  return out;
}

}  // namespace xmesh::placement
