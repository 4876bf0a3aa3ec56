// The cluster's TLS credentials for the control plane: a cluster CA and one certificate per node
// (and one for operators' commands), made by `xmesh cluster keygen`, read by the control gate.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using SSL_CTX = struct ssl_ctx_st;

namespace xmesh::transport {

/// The PEM files one party (a node, or "operator" for the command line) presents: its key and
/// certificate, and the cluster CA every peer's certificate must be signed by.
struct tls_identity {
  std::filesystem::path ca;
  std::filesystem::path certificate;
  std::filesystem::path key;
  std::string name;  // the certificate's subject (CN)
};

/// `DIR/tls-ca.pem`, `DIR/tls-NAME.pem`, `DIR/tls-NAME.key`; throws naming the missing file and
/// the command that writes it.
tls_identity tls_identity_in(const std::filesystem::path& dir, const std::string& name);

/// Writes the cluster CA into `dir` when it has none, then a key and certificate signed by it
/// for each name that has none yet (keys 0600). Returns the names it wrote.
std::vector<std::string> write_tls_identities(const std::filesystem::path& dir,
                                              const std::vector<std::string>& names);

/// A party's signed statement (a node's registration): its certificate (PEM) and the signature
/// of its key over a text.
struct signed_claim {
  std::string certificate_pem;
  std::string signature;
};

/// Signs `text` with `id`'s key (ECDSA, SHA-256); throws naming the file it cannot read.
signed_claim sign_claim(const tls_identity& id, std::string_view text);

/// The name (CN) of the claim's certificate when the cluster CA `ca` signed that certificate and
/// its key signed `text`; throws saying what failed.
std::string verify_claim(const std::filesystem::path& ca, const signed_claim& claim,
                         std::string_view text);

/// A TLS 1.3 context that presents `id` and accepts only peers whose certificate the cluster CA
/// signed (mutual: a server asks its clients for theirs). Throws naming the file it cannot read.
std::shared_ptr<SSL_CTX> make_tls_context(const tls_identity& id, bool server);

}  // namespace xmesh::transport
