// `xmesh tokenize`: encode text (or a file's bytes) to ids, or decode ids to text.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/tokenizer/tokenizer.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"
#include "tools/text_file.hpp"

namespace xmesh::tools {

namespace {

int decode_ids(const tokenizer::tokenizer& tok, const flags& f) {
  std::vector<int32_t> ids;
  for (int64_t v : f.integers("--decode")) {
    if (v < INT32_MIN || v > INT32_MAX)
      throw usage_error("--decode: id " + std::to_string(v) + " out of range");
    ids.push_back(static_cast<int32_t>(v));
  }
  std::string text = tok.decode(ids);
  if (f.has("--json")) {
    std::cout << nlohmann::json{{"text", text}}.dump() << "\n";
  } else {
    std::cout << text << "\n";
  }
  return 0;
}

}  // namespace

int tokenize_main(int argc, char** argv) {
  flags f("tokenize",
          "--tokenizer FILE (--text STR | --file F | --decode 1,2,3) [--add-special] [--json]",
          {{"--tokenizer", true, "tokenizer.json (tokenizer_config.json beside it is read too)"},
           {"--text", true, "text to encode"},
           {"--file", true, "encode this file's bytes exactly"},
           {"--decode", true, "comma-separated ids to decode to text"},
           {"--add-special", false, "add the model's special tokens (bos) when encoding"},
           {"--json", false, "print {\"ids\": [...]} (or {\"text\": ...} with --decode)"}},
          argc, argv);
  int sources = int(f.has("--text")) + int(f.has("--file")) + int(f.has("--decode"));
  if (sources != 1) throw usage_error("give exactly one of --text, --file and --decode");
  auto tok = tokenizer::tokenizer::load(f.str("--tokenizer"));
  if (f.has("--decode")) return decode_ids(tok, f);
  std::string text = f.has("--text") ? f.str("--text") : read_file(f.str("--file"));
  auto ids = tok.encode(text, f.has("--add-special"));
  if (f.has("--json")) {
    std::cout << nlohmann::json{{"ids", ids}}.dump() << "\n";
    return 0;
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line.append(i ? " " : "").append(std::to_string(ids[i]));
  std::cout << line << "\n";
  return 0;
}

}  // namespace xmesh::tools
