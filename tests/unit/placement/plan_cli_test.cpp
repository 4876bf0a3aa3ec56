// `xmesh plan` through the real binary (XMESH_BIN): good runs write a valid placement, bad input
// gives exactly one clear error line and a non-zero exit status, never a crash.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct run_result {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class PlanCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("XMESH_BIN");
    if (bin == nullptr || !fs::exists(bin)) GTEST_SKIP() << "XMESH_BIN not set or not built";
    bin_ = bin;
    dir_ = fs::temp_directory_path() /
           ("xmesh_plan_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    write("load.json", R"({"load": [[90,132,40,61,104,165,39,4,73,56,183,86],
                                    [20,107,104,64,19,197,187,157,172,86,16,27]]})");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  run_result run(const std::string& args) {
    std::string cmd =
        "'" + bin_ + "' plan " + args + " >'" + path("stdout") + "' 2>'" + path("stderr") + "'";
    int raw = std::system(cmd.c_str());
    run_result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    r.out = slurp(dir_ / "stdout");
    r.err = slurp(dir_ / "stderr");
    return r;
  }

  // The run failed cleanly: non-zero exit (not a signal), one error line mentioning `needle`.
  void expect_error(const std::string& args, const std::string& needle) {
    auto r = run(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_LT(r.status, 128) << "crashed: " << args;
    EXPECT_EQ(r.err.rfind("xmesh plan: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
  }

  std::string base() const { return "--load " + path("load.json") + " --out " + path("p.json"); }

  std::string bin_;
  fs::path dir_;
};

TEST_F(PlanCli, WritesPlacementAndReport) {
  auto r = run(base() + " --hosts 8 --replicas 16 --groups 4 --nodes 2 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto report = nlohmann::json::parse(r.out);
  EXPECT_GT(report["balancedness_after"].get<double>(),
            report["balancedness_before"].get<double>());
  EXPECT_EQ(report["layers"].size(), 2u);
  auto placement = nlohmann::json::parse(slurp(dir_ / "p.json"));
  ASSERT_EQ(placement["layers"].size(), 2u);
  EXPECT_EQ(placement["layers"][0]["expert_of_slot"].size(), 16u);
  EXPECT_EQ(placement["layers"][0]["host_of_slot"].size(), 16u);
}

TEST_F(PlanCli, ReplanningFromItsOwnOutputMovesNothing) {
  ASSERT_EQ(run(base() + " --hosts 8 --replicas 16 --host-speed 1,1,1,1,2,2,2,2").status, 0);
  fs::copy_file(dir_ / "p.json", dir_ / "current.json");
  auto r = run(base() + " --hosts 8 --replicas 16 --host-speed 1,1,1,1,2,2,2,2 --current " +
               path("current.json") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["moved_replicas"].get<int64_t>(), 0);
  EXPECT_EQ(slurp(dir_ / "p.json"), slurp(dir_ / "current.json"));
}

TEST_F(PlanCli, TextReportAndHelp) {
  auto r = run(base() + " --hosts 4 --replicas 16 --host-slots 6,4,4,4");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("overall balancedness"), std::string::npos) << r.out;
  EXPECT_EQ(run("--help").status, 0);
}

TEST_F(PlanCli, MalformedJson) {
  write("load.json", "{\"load\": [[1, 2,\n");
  expect_error(base() + " --hosts 2 --replicas 2", "malformed JSON");
}

TEST_F(PlanCli, NegativeLoad) {
  write("load.json", R"({"load": [[1, -2, 3]]})");
  expect_error(base() + " --hosts 3 --replicas 3", "load[0][1] is negative");
}

TEST_F(PlanCli, NonNumericLoad) {
  write("load.json", R"({"load": [[1, "many", 3]]})");
  expect_error(base() + " --hosts 3 --replicas 3", "load[0][1] is not a number");
}

TEST_F(PlanCli, MissingLoadKey) {
  write("load.json", R"({"loads": []})");
  expect_error(base() + " --hosts 3 --replicas 3", "missing \"load\"");
}

TEST_F(PlanCli, FewerSlotsThanExperts) {
  expect_error(base() + " --hosts 4 --replicas 8", "fewer than the 12 experts");
}

TEST_F(PlanCli, ReplicasNotReachableWithHostSlots) {
  expect_error(base() + " --hosts 4 --replicas 16 --host-slots 4,4,4,2", "not reachable");
}

TEST_F(PlanCli, MismatchedLengths) {
  write("load.json", R"({"load": [[1, 2, 3], [1, 2]]})");
  expect_error(base() + " --hosts 3 --replicas 3", "layer 1 has 2 experts");
  write("load.json", R"({"load": [[1, 2, 3]]})");
  expect_error(base() + " --hosts 3 --replicas 3 --host-speed 1,2", "--host-speed: 2 values for 3");
  expect_error(base() + " --hosts 3 --replicas 3 --host-slots 1,1,1,1", "--host-slots: 4 values");
  write("current.json", R"({"layers": [{"expert_of_slot": [0, 1, 2], "host_of_slot": [0, 1]}]})");
  expect_error(base() + " --hosts 3 --replicas 3 --current " + path("current.json"),
               "expert_of_slot has 3 entries, host_of_slot 2");
}

TEST_F(PlanCli, BadFlags) {
  expect_error(base() + " --hosts two --replicas 3", "--hosts: expected an integer");
  expect_error(base() + " --hosts 3", "--replicas: required");
  expect_error(base() + " --hosts 3 --replicas 12 --groups 4", "give both");
  expect_error(
      "--load " + path("nope.json") + " --out " + path("p.json") + " --hosts 3 --replicas 12",
      "cannot open");
}

}  // namespace
