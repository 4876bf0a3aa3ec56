#include "transport/gate/tls.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace xmesh::transport {

namespace fs = std::filesystem;

namespace {

std::string openssl_error() {
  char text[256] = "unknown OpenSSL error";
  if (auto e = ERR_get_error()) ERR_error_string_n(e, text, sizeof text);
  ERR_clear_error();
  return text;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + openssl_error());
}

using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using cert_ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using file_ptr = std::unique_ptr<FILE, decltype(&std::fclose)>;

key_ptr new_key() {
  key_ptr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), &EVP_PKEY_free);
  if (!k) fail("keygen: cannot make an EC key");
  return k;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext || !X509_add_ext(cert, ext, -1)) fail(std::string("keygen: extension ") + value);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `cn`, signed by `issuer` (self-signed when null: the CA).
cert_ptr new_certificate(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key) {
  cert_ptr cert(X509_new(), &X509_free);
  uint64_t serial = 0;
  if (!cert || RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1)
    fail("keygen: cannot make a certificate");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial >> 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 366 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  add_extension(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (issuer) {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), signer, NID_key_usage, "critical,digitalSignature");
    add_extension(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
    add_extension(cert.get(), signer, NID_authority_key_identifier, "keyid");
  } else {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  if (!X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()))
    fail("keygen: cannot sign the certificate of " + cn);
  return cert;
}

// Opens `path` for writing, readable by its owner only (keys) or by all (certificates).
file_ptr create(const fs::path& path, bool secret) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, secret ? 0600 : 0644);
  if (fd >= 0) ::fchmod(fd, secret ? 0600 : 0644);  // an existing file keeps its mode otherwise
  FILE* f = fd < 0 ? nullptr : fdopen(fd, "w");
  if (!f) throw std::runtime_error(path.string() + ": cannot write");
  return {f, &std::fclose};
}

void write_key(const fs::path& path, EVP_PKEY* key) {
  auto f = create(path, true);
  if (!PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
    fail(path.string());
}

void write_certificate(const fs::path& path, X509* cert) {
  auto f = create(path, false);
  if (!PEM_write_X509(f.get(), cert)) fail(path.string());
}

file_ptr open_read(const fs::path& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) throw std::runtime_error(path.string() + ": cannot read");
  return {f, &std::fclose};
}

cert_ptr read_certificate(const fs::path& path) {
  auto f = open_read(path);
  cert_ptr c(PEM_read_X509(f.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!c) fail(path.string() + ": not a PEM certificate");
  return c;
}

key_ptr read_key(const fs::path& path) {
  auto f = open_read(path);
  key_ptr k(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!k) fail(path.string() + ": not a PEM key");
  return k;
}

}  // namespace

tls_identity tls_identity_in(const fs::path& dir, const std::string& name) {
  tls_identity id{dir / "tls-ca.pem", dir / ("tls-" + name + ".pem"),
                  dir / ("tls-" + name + ".key"), name};
  for (const auto& p : {id.ca, id.certificate, id.key})
    if (!fs::exists(p))
      throw std::runtime_error(p.string() +
                               ": missing (xmesh cluster keygen --cluster FILE writes the "
                               "cluster's keys; --node NAME adds one for a node not in the file)");
  return id;
}

std::vector<std::string> write_tls_identities(const fs::path& dir,
                                              const std::vector<std::string>& names) {
  for (const auto& name : names)
    if (name.empty() || name == "ca" ||
        name.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos ||
        name[0] == '.')
      throw std::runtime_error("keygen: '" + name +
                               "' cannot name a key pair (letters, digits, . _ - only; not ca)");
  const fs::path ca_pem = dir / "tls-ca.pem", ca_key = dir / "tls-ca.key";
  if (!fs::exists(ca_pem)) {
    auto key = new_key();
    unsigned char tag[6];
    if (RAND_bytes(tag, sizeof tag) != 1) fail("keygen: no random bytes");
    char hex[13];
    for (int i = 0; i < 6; ++i) std::snprintf(hex + 2 * i, 3, "%02x", tag[i]);
    auto cert =
        new_certificate(key.get(), std::string("xmesh cluster CA ") + hex, nullptr, nullptr);
    write_key(ca_key, key.get());
    write_certificate(ca_pem, cert.get());
  }
  if (!fs::exists(ca_key))
    throw std::runtime_error(ca_key.string() +
                             ": missing: certificates for new nodes are signed with the CA key "
                             "(run keygen where the cluster's keys were made)");
  auto ca = read_certificate(ca_pem);
  auto signer = read_key(ca_key);
  std::vector<std::string> written;
  for (const auto& name : names) {
    const fs::path pem = dir / ("tls-" + name + ".pem");
    if (fs::exists(pem)) continue;
    auto key = new_key();
    auto cert = new_certificate(key.get(), name, ca.get(), signer.get());
    write_key(dir / ("tls-" + name + ".key"), key.get());
    write_certificate(pem, cert.get());
    written.push_back(name);
  }
  return written;
}

signed_claim sign_claim(const tls_identity& id, std::string_view text) {
  auto key = read_key(id.key);
  signed_claim claim;
  std::ifstream pem(id.certificate);
  claim.certificate_pem.assign(std::istreambuf_iterator<char>(pem), {});
  if (claim.certificate_pem.empty())
    throw std::runtime_error(id.certificate.string() + ": cannot read");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  size_t size = 0;
  if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &size, reinterpret_cast<const unsigned char*>(text.data()),
                     text.size()) != 1)
    fail("cannot sign with " + id.key.string());
  claim.signature.resize(size);
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(claim.signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 1)
    fail("cannot sign with " + id.key.string());
  claim.signature.resize(size);
  return claim;
}

std::string verify_claim(const fs::path& ca, const signed_claim& claim, std::string_view text) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(claim.certificate_pem.data(), static_cast<int>(claim.certificate_pem.size())),
      &BIO_free);
  cert_ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr,
                &X509_free);
  ERR_clear_error();
  if (!cert) throw std::runtime_error("its certificate is not a PEM certificate");
  auto authority = read_certificate(ca);
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> check(X509_STORE_CTX_new(),
                                                                        &X509_STORE_CTX_free);
  if (!store || !check || X509_STORE_add_cert(store.get(), authority.get()) != 1 ||
      X509_STORE_CTX_init(check.get(), store.get(), cert.get(), nullptr) != 1)
    fail("cannot check a certificate");
  if (X509_verify_cert(check.get()) != 1)
    throw std::runtime_error(std::string("its certificate is not one of this cluster's (") +
                             X509_verify_cert_error_string(X509_STORE_CTX_get_error(check.get())) +
                             ")");
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  const bool signed_by_it =
      key && md && EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(md.get(), reinterpret_cast<const unsigned char*>(claim.signature.data()),
                       claim.signature.size(), reinterpret_cast<const unsigned char*>(text.data()),
                       text.size()) == 1;
  ERR_clear_error();
  if (!signed_by_it) throw std::runtime_error("its signature does not match its certificate");
  char cn[256] = "";
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn) <=
      0)
    throw std::runtime_error("its certificate names nobody");
  return cn;
}

std::shared_ptr<SSL_CTX> make_tls_context(const tls_identity& id, bool server) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()),
                               &SSL_CTX_free);
  if (!ctx) fail("TLS context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  if (SSL_CTX_use_certificate_file(ctx.get(), id.certificate.c_str(), SSL_FILETYPE_PEM) != 1)
    fail(id.certificate.string());
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), id.key.c_str(), SSL_FILETYPE_PEM) != 1)
    fail(id.key.string());
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    fail(id.key.string() + ": does not match " + id.certificate.string());
  if (SSL_CTX_load_verify_locations(ctx.get(), id.ca.c_str(), nullptr) != 1) fail(id.ca.string());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_verify_depth(ctx.get(), 1);
  if (server) SSL_CTX_set_num_tickets(ctx.get(), 0);  // no resumption: every peer shows its cert
  return ctx;
}

}  // namespace xmesh::transport
