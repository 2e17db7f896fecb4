// `lowrank similarity`, run as a program: numpy's φ grids on the committed fixtures, the table,
// --json, --out, the ways --tensor names a matrix, and every kind of bad input (exit 1 with one
// line on stderr) and bad usage (exit 2).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/io/safetensors.h"
#include "core/ops.h"

#include "support/tool_runner.h"

using namespace lowrank;
namespace fs = std::filesystem;

namespace {

// The bound for agreement with numpy (both sides use f64 SVDs; see the reference test).
constexpr double kPhiTol = 1e-5;

const std::string kBin = std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank";
const std::string kFix = std::string(LOWRANK_FIXTURES) + "/similarity/";
const std::string kA4 = kFix + "adapter_r4.safetensors";
const std::string kA6 = kFix + "adapter_r6_peft.safetensors";

using Result = lowrank::test::ToolResult;

std::string slurp(const fs::path& p) {
  return lowrank::test::read_bytes(p);
}

std::string quoted(const std::string& s) {
  return lowrank::test::shell_quoted(s);
}

class SimilarityTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lowrank_similarity_tool_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& args) const {
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string cmd = quoted(kBin) + " similarity " + args + " >" + quoted(out) + " 2>" + quoted(err);
    const int status = std::system(cmd.c_str());
    Result r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out), r.err = slurp(err);
    return r;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string save(const std::string& name, const std::map<std::string, Tensor>& tensors) const {
    io::save_safetensors(path(name), tensors);
    return path(name);
  }
  // Exit 1 and exactly one line on stderr that names the problem.
  void expect_failure(const std::string& args, const std::string& fragment) const {
    Result r = run(args);
    EXPECT_EQ(r.rc, 1) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("lowrank: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }

  fs::path dir_;
};

nlohmann::json fixture() {
  std::ifstream in(kFix + "similarity_phi.json");
  return nlohmann::json::parse(in);
}

void expect_phi_equals(const nlohmann::json& got, const nlohmann::json& ref) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_EQ(got[i].size(), ref[i].size());
    for (size_t j = 0; j < ref[i].size(); ++j)
      EXPECT_NEAR(got[i][j].get<double>(), ref[i][j].get<double>(), kPhiTol) << i << "," << j;
  }
}

TEST_F(SimilarityTool, JsonMatchesNumpyOnBothSides) {
  const nlohmann::json ref = fixture();
  Result r = run(quoted(kA4) + " " + quoted(kA6) + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one JSON object, one line";
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["side"], "right");
  EXPECT_EQ(j["tensor1"], "fc2.lora_A.weight");
  EXPECT_EQ(j["tensor2"], "base_model.model.fc2.lora_A.weight");
  EXPECT_EQ(j["rows"], 4);
  EXPECT_EQ(j["cols"], 6);
  expect_phi_equals(j["phi"], ref["phi_right"]);

  r = run(quoted(kA4) + " " + quoted(kA6) + " --json --left");
  ASSERT_EQ(r.rc, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["side"], "left");
  EXPECT_EQ(j["tensor2"], "base_model.model.fc2.lora_B.weight");
  expect_phi_equals(j["phi"], ref["phi_left"]);
}

TEST_F(SimilarityTool, TableHasOneLinePerRow) {
  Result r = run(quoted(kA4) + " " + quoted(kA6));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  const nlohmann::json ref = fixture();
  char first[32];
  std::snprintf(first, sizeof first, "%6.3f", ref["phi_right"][0][0].get<double>());
  std::istringstream lines(r.out);
  std::string line;
  int rows = 0;
  bool saw_header = false, saw_first = false;
  while (std::getline(lines, line)) {
    if (line.find("i\\j") != std::string::npos)
      saw_header = true;
    else if (saw_header && !line.empty()) {
      ++rows;
      if (rows == 1) saw_first = line.find(first) != std::string::npos;
    }
  }
  EXPECT_TRUE(saw_header) << r.out;
  EXPECT_EQ(rows, 4) << r.out;
  EXPECT_TRUE(saw_first) << first << " not in\n" << r.out;
}

TEST_F(SimilarityTool, OutWritesHeatmapAndJson) {
  const std::string out = path("nested/run");
  Result r = run(quoted(kA4) + " " + quoted(kA6) + " --out " + quoted(out) + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  nlohmann::json printed = nlohmann::json::parse(r.out);
  const std::string png = out + "/similarity.png", js = out + "/similarity.json";
  EXPECT_EQ(printed["outputs"]["png"], png);
  EXPECT_EQ(printed["outputs"]["json"], js);
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 1000u);
  EXPECT_EQ(slurp(png).substr(1, 3), "PNG");
  nlohmann::json saved = nlohmann::json::parse(slurp(js));
  EXPECT_EQ(saved["phi"], printed["phi"]);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(out)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"similarity.json", "similarity.png"}));
}

TEST_F(SimilarityTool, AdapterFoldersAreReadAndNamedByTheirRun) {
  fs::create_directories(dir_ / "lora_r4_s0");
  fs::create_directories(dir_ / "peft_r6");
  fs::copy_file(kA4, dir_ / "lora_r4_s0" / "adapter_model.safetensors");
  fs::copy_file(kA6, dir_ / "peft_r6" / "adapter_model.safetensors");
  // A folder (with or without its trailing slash) and the file inside it name the same run.
  Result r = run(quoted(path("lora_r4_s0") + "/") + " " + quoted(path("peft_r6/adapter_model.safetensors")) +
                 " --json --out " + quoted(path("out")));
  ASSERT_EQ(r.rc, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["name1"], "lora_r4_s0");
  EXPECT_EQ(j["name2"], "peft_r6");
  expect_phi_equals(j["phi"], fixture()["phi_right"]);
  EXPECT_TRUE(fs::exists(path("out/similarity.png")));
  expect_failure(quoted(path("out")) + " " + quoted(kA6), "holds no adapter_model.safetensors");
}

TEST_F(SimilarityTool, TensorFlagAcceptsModuleAndFullNames) {
  const nlohmann::json ref = fixture();
  for (const std::string t : {"fc2", "fc2.lora_A.weight", "base_model.model.fc2.lora_A.weight"}) {
    Result r = run(quoted(kA4) + " " + quoted(kA6) + " --json --tensor " + t);
    ASSERT_EQ(r.rc, 0) << t << ": " << r.err;
    expect_phi_equals(nlohmann::json::parse(r.out)["phi"], ref["phi_right"]);
  }
  // A file against itself: identical subspaces, φ(i, i) = 1.
  Result r = run(quoted(kA6) + " " + quoted(kA6) + " --json --tensor fc2 --left");
  ASSERT_EQ(r.rc, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(j["phi"][i][i].get<double>(), 1.0, 1e-12);
  // Any two matrices that share their column count, e.g. an A against itself by full name.
  const std::string w = save("w.safetensors", {{"layer.weight", randn({5, 24}, 3)}, {"bias", randn({5}, 4)}});
  r = run(quoted(w) + " " + quoted(w) + " --json --tensor layer.weight");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["phi"][4][4].get<double>(), 1.0, 1e-12);
}

TEST_F(SimilarityTool, BadFilesAndNamesExitOneWithOneLine) {
  expect_failure(quoted(path("missing.safetensors")) + " " + quoted(kA6), "missing.safetensors");
  { std::ofstream(path("garbage.safetensors")) << "this is not a safetensors file"; }
  expect_failure(quoted(kA4) + " " + quoted(path("garbage.safetensors")), "garbage.safetensors");
  {
    const std::string bytes = slurp(kA6);
    std::ofstream(path("truncated.safetensors"), std::ios::binary) << bytes.substr(0, bytes.size() - 40);
  }
  expect_failure(quoted(kA4) + " " + quoted(path("truncated.safetensors")), "truncated.safetensors");
  expect_failure(quoted(kA4) + " " + quoted(kA6) + " --tensor fc9", "has no tensor 'fc9'");

  const std::string other = save("fc1.safetensors", {{"fc1.lora_A.weight", randn({4, 24}, 1)}});
  expect_failure(quoted(kA4) + " " + quoted(other), "mismatched adapter names");
  const std::string two =
      save("two.safetensors", {{"fc1.lora_A.weight", randn({4, 24}, 1)}, {"fc2.lora_A.weight", randn({4, 24}, 2)}});
  expect_failure(quoted(two) + " " + quoted(two), "ambiguous");
  const std::string none = save("none.safetensors", {{"weight", randn({4, 24}, 1)}});
  expect_failure(quoted(none) + " " + quoted(kA4), "holds no '*.lora_A.weight' tensors");
  const std::string flat = save("flat.safetensors", {{"fc2.lora_A.weight", randn({24}, 1)}});
  expect_failure(quoted(flat) + " " + quoted(kA4), "not a 2-D matrix");
  const std::string ints = save("ints.safetensors", {{"fc2.lora_A.weight", Tensor::zeros({4, 24}, DType::I64)}});
  expect_failure(quoted(ints) + " " + quoted(kA4), "not a float matrix");
  const std::string narrow = save("narrow.safetensors", {{"fc2.lora_A.weight", randn({4, 10}, 1)}});
  expect_failure(quoted(narrow) + " " + quoted(kA4), "do not share");
  Tensor bad = randn({4, 24}, 1);
  bad.select(0, 2).select(0, 5).fill_(NAN);
  const std::string nan = save("nan.safetensors", {{"fc2.lora_A.weight", bad}});
  expect_failure(quoted(nan) + " " + quoted(kA4), "NaN or Inf");
  { std::ofstream(path("a_file")) << "x"; }
  expect_failure(quoted(kA4) + " " + quoted(kA6) + " --out " + quoted(path("a_file")), "output folder");
}

TEST_F(SimilarityTool, BadUsageExitsTwo) {
  EXPECT_EQ(run("").rc, 2);
  EXPECT_EQ(run(quoted(kA4)).rc, 2);
  EXPECT_EQ(run(quoted(kA4) + " " + quoted(kA6) + " --bogus").rc, 2);
  EXPECT_EQ(run(quoted(kA4) + " " + quoted(kA6) + " --tensor").rc, 2);
  Result help = run("--help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.out.find("--left"), std::string::npos) << help.out;
}

}  // namespace
