// Malformed checkpoints give one precise error naming the file and the fault, never a crash.
#include "model/safetensors.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "tests/support/temp_dir.hpp"

namespace xmesh::model {
namespace {

using testing_support::temp_dir;

void write_raw(const std::filesystem::path& p, const std::string& header, size_t data_bytes,
               std::optional<uint64_t> declared_len = {}) {
  std::ofstream out(p, std::ios::binary);
  uint64_t len = declared_len.value_or(header.size());
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header << std::string(data_bytes, '\0');
}

std::string error_of(const std::filesystem::path& p) {
  try {
    safetensors_checkpoint ck;
    ck.add_file(p);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ReadsTensorsInPlace) {
  temp_dir d;
  write_raw(
      d.path() / "a.safetensors",
      R"({"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"y":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},"__metadata__":{"format":"pt"}})",
      22);
  auto ck = safetensors_checkpoint::open(d.path());
  ASSERT_NE(ck.find("x"), nullptr);
  EXPECT_EQ(ck.find("x")->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ck.find("y")->type, kernels::dtype::bf16);
  EXPECT_EQ(ck.find("y")->data - ck.find("x")->data, 16);
  EXPECT_EQ(ck.find("z"), nullptr);
}

struct bad_case {
  const char* name;
  std::string header;
  size_t data_bytes;
  std::optional<uint64_t> declared_len;
  const char* expected;
};

class SafetensorsRejects : public testing::TestWithParam<bad_case> {};

TEST_P(SafetensorsRejects, WithOneClearLine) {
  temp_dir d;
  auto p = d.path() / "bad.safetensors";
  const auto& c = GetParam();
  write_raw(p, c.header, c.data_bytes, c.declared_len);
  std::string err = error_of(p);
  EXPECT_NE(err.find(c.expected), std::string::npos) << err;
  EXPECT_NE(err.find(p.string()), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsRejects,
    testing::Values(
        bad_case{"HeaderBeyondFile", R"({})", 0, 1000, "header length 1000 exceeds the file"},
        bad_case{"BadJson", R"({"x": [1, 2)", 0, {}, "not a valid JSON object"},
        bad_case{"OffsetsOutOfRange",
                 R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                 8,
                 {},
                 "out of range"},
        bad_case{
            "Overlapping",
            R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12,
            {},
            "overlap"},
        bad_case{"SizeDisagreesWithShape",
                 R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                 8,
                 {},
                 "needs 12 bytes"},
        bad_case{"UnsupportedDtype",
                 R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                 8,
                 {},
                 "unsupported dtype I64"},
        bad_case{"NegativeDimension",
                 R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})",
                 8,
                 {},
                 "negative"},
        bad_case{"ReversedOffsets",
                 R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                 8,
                 {},
                 "out of range"},
        bad_case{"MissingFields",
                 R"({"x":{"dtype":"F32"}})",
                 0,
                 {},
                 "needs dtype, shape and data_offsets"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Safetensors, TruncatedFile) {
  temp_dir d;
  auto p = d.path() / "short.safetensors";
  std::ofstream(p, std::ios::binary) << "abc";
  EXPECT_NE(error_of(p).find("truncated"), std::string::npos);
}

TEST(Safetensors, ShardedIndexNamesMissingTensor) {
  temp_dir d;
  write_raw(d.path() / "s1.safetensors",
            R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  write_raw(d.path() / "s2.safetensors",
            R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  std::ofstream(d.path() / "model.safetensors.index.json")
      << R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})";
  auto ck = safetensors_checkpoint::open(d.path());
  EXPECT_NE(ck.find("a"), nullptr);
  EXPECT_NE(ck.find("b"), nullptr);
  std::ofstream(d.path() / "model.safetensors.index.json")
      << R"({"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}})";
  try {
    safetensors_checkpoint::open(d.path());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'c' is not in s2.safetensors"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace xmesh::model
