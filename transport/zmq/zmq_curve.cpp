#include "transport/zmq/zmq_curve.hpp"

#include <array>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <vector>
#include <zmq_addon.hpp>

namespace xmesh::transport {

zap_handler::zap_handler(zmq::context_t& context, const std::string& client_public_z85)
    : socket_(context, zmq::socket_type::rep) {
  allowed_.resize(32);
  if (zmq_z85_decode(reinterpret_cast<uint8_t*>(allowed_.data()), client_public_z85.c_str()) ==
      nullptr)
    throw std::invalid_argument("zmq: the cluster's client public key is not Z85");
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
  thread_ = std::thread([this] { run(); });
}

zap_handler::~zap_handler() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void zap_handler::run() {
  while (!stopping_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) <= 0) continue;
    std::vector<zmq::message_t> req;
    if (!zmq::recv_multipart(socket_, std::back_inserter(req))) continue;
    // version, request id, domain, address, identity, mechanism, credentials...
    const bool ok =
        req.size() >= 7 && req[5].to_string() == "CURVE" && req[6].to_string() == allowed_;
    refused_ += !ok;
    std::array<zmq::const_buffer, 6> reply = {
        zmq::str_buffer("1.0"),
        zmq::buffer(req.size() > 1 ? req[1].data() : nullptr, req.size() > 1 ? req[1].size() : 0),
        ok ? zmq::str_buffer("200") : zmq::str_buffer("400"),
        ok ? zmq::str_buffer("OK") : zmq::str_buffer("not a key of this cluster"),
        zmq::str_buffer(""),
        zmq::str_buffer("")};
    (void)zmq::send_multipart(socket_, reply);
  }
}

curve_keys make_curve_keys() {
  char pub[41], sec[41];
  curve_keys k;
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error("zmq: no CURVE support in this libzmq (built without libsodium?)");
  k.server_public = pub;
  k.server_secret = sec;
  if (zmq_curve_keypair(pub, sec) != 0) throw std::runtime_error("zmq: zmq_curve_keypair failed");
  k.client_public = pub;
  k.client_secret = sec;
  return k;
}

curve_keys read_curve_keys(const std::filesystem::path& dir) {
  auto read = [&](const char* name) {
    auto path = dir / name;
    std::ifstream in(path);
    std::string z85;
    if (!(in >> z85) || z85.size() != 40)
      throw std::runtime_error(path.string() +
                               ": missing or not a CURVE key (xmesh cluster keygen --cluster FILE "
                               "writes it)");
    return z85;
  };
  return {read("curve-server.pub"), read("curve-server.sec"), read("curve-client.pub"),
          read("curve-client.sec")};
}

}  // namespace xmesh::transport
