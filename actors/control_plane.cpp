#include "actors/control_plane.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <caf/io/basp_broker.hpp>
#include <caf/io/doorman.hpp>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

namespace xmesh::actors {

namespace {

// A doorman with no socket: connections the gate admitted are handed to CAF's BASP broker
// through it, exactly as its own doorman hands over an accepted socket.
class gate_doorman final : public caf::io::doorman {
 public:
  gate_doorman(caf::io::network::multiplexer& mx, uint16_t port)
      : caf::io::doorman(caf::io::accept_handle::from_int(next_id())), mx_(mx), port_(port) {}

  // Runs in the multiplexer's loop (where the broker runs): `fd` becomes the broker's.
  void take(int fd) {
    if (detached()) {
      ::close(fd);
      return;
    }
    auto scribe = mx_.new_scribe(fd);
    auto hdl = scribe->hdl();
    parent()->add_scribe(std::move(scribe));
    caf::io::doorman::new_connection(&mx_, hdl);
  }

  bool new_connection() override { return false; }  // nothing to accept: take() hands them in
  void launch() override {}
  void graceful_shutdown() override { detach(&mx_, false); }
  void add_to_loop() override {}
  void remove_from_loop() override {}
  [[nodiscard]] std::string addr() const override { return "gate"; }  // (no socket of its own)
  [[nodiscard]] uint16_t port() const override { return port_; }

 private:
  // Above any descriptor number, so no real doorman's handle is the same.
  static int64_t next_id() {
    static std::atomic<int64_t> id{int64_t{1} << 40};
    return id++;
  }

  caf::io::network::multiplexer& mx_;
  uint16_t port_;
};

caf::actor basp_broker(caf::actor_system& sys) {
  return sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
}

}  // namespace

std::unique_ptr<transport::control_gate> make_gate(const cluster_config& c,
                                                   const std::string& party,
                                                   transport::gate_limits limits) {
  std::optional<transport::tls_identity> id;
  if (c.security.authenticated()) id = transport::tls_identity_in(c.security.keys, party);
  return std::make_unique<transport::control_gate>(
      party == "operator" ? "xmesh" : "xmesh node " + party, id, limits);
}

void publish_behind(caf::actor_system& sys, transport::control_gate& gate, const caf::actor& actor,
                    const std::string& host, uint16_t port) {
  auto& mx = sys.middleman().backend();
  caf::intrusive_ptr<gate_doorman> door{new gate_doorman(mx, port)};
  caf::scoped_actor self{sys};
  std::set<std::string> interfaces;
  std::string failed;
  self->request(basp_broker(sys), std::chrono::seconds(10), caf::publish_atom_v,
                caf::io::doorman_ptr{door}, port, caf::actor_cast<caf::strong_actor_ptr>(actor),
                interfaces)
      .receive([] {}, [&](caf::error& e) { failed = sys.render(e); });
  if (!failed.empty()) throw std::runtime_error("cannot publish the node's actor: " + failed);
  gate.listen(host, port, [&mx, door](int fd) { mx.post([door, fd] { door->take(fd); }); });
}

caf::expected<caf::actor> try_reach(caf::actor_system& sys, transport::control_gate& gate,
                                    const node_config& node, std::chrono::milliseconds limit) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return caf::make_error(caf::sec::cannot_connect_to_node,
                           std::string("no socket pair: ") + std::strerror(errno));
  gate.dial(pair[1], node.host, node.control_port, node.name_unknown ? "" : node.name);
  auto scribe = sys.middleman().backend().new_scribe(pair[0]);
  caf::scoped_actor self{sys};
  caf::expected<caf::actor> result{caf::sec::cannot_connect_to_node};
  self->request(basp_broker(sys), limit, caf::connect_atom_v, std::move(scribe), node.control_port)
      .receive(
          [&](caf::node_id&, caf::strong_actor_ptr& found, std::set<std::string>&) {
            if (found)
              result = caf::actor_cast<caf::actor>(found);
            else
              result =
                  caf::make_error(caf::sec::no_actor_published_at_port, "no actor published there");
          },
          [&](caf::error& e) { result = std::move(e); });
  if (result) return result;
  auto why = gate.last_error(node.host, node.control_port);
  if (why.empty()) return result;
  return caf::make_error(caf::sec::cannot_connect_to_node, why);
}

}  // namespace xmesh::actors
