#include "actors/admission.hpp"

#include "actors/expert_fetch.hpp"
#include "transport/gate/tls.hpp"

namespace xmesh::actors {

std::string claim_refusal(const std::filesystem::path& keys, const node_info& info) {
  const std::string who = "node '" + info.name + "'";
  if (info.certificate.empty()) return who + " registered without its certificate's signature";
  try {
    auto cn = transport::verify_claim(keys / "tls-ca.pem", {info.certificate, info.signature},
                                      registration_text(info));
    if (cn != info.name) return who + " registered with the certificate of '" + cn + "'";
  } catch (const std::exception& e) {
    return who + "'s registration is refused: " + e.what();
  }
  return {};
}

std::string order_refusal(const std::filesystem::path& keys, const operator_proof& proof,
                          const std::string& text) {
  if (keys.empty()) return {};
  if (proof.certificate.empty()) return "an order without the operator's signature is refused";
  try {
    auto cn =
        transport::verify_claim(keys / "tls-ca.pem", {proof.certificate, proof.signature}, text);
    if (cn != "operator")
      return "an order signed by '" + cn + "' is refused: orders take the operator's key";
  } catch (const std::exception& e) {
    return std::string("an order is refused: ") + e.what();
  }
  return {};
}

std::string fallback_refusal(const std::pair<std::string, uint64_t>& first, const node_info& info) {
  if (info.fallback == 0 || first.first.empty() || first.first == info.name ||
      first.second == info.fallback)
    return {};
  return "node '" + info.name + "' keeps another low-precision copy than node '" + first.first +
         "' (checksum " + checksum_hex(info.fallback) + ", not " + checksum_hex(first.second) +
         "): a row in q4 must not depend on its replica";
}

}  // namespace xmesh::actors
