// Runs the `lowrank` program as a user would (a shell command with its own temporary folder)
// and captures exit code, stdout and stderr: shared by the tool test suites.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/files.h"

namespace lowrank::test {

struct ToolResult {
  int rc = -1;
  std::string out, err;
};

inline std::string shell_quoted(const std::string& s) {
  return "'" + s + "'";
}

// A fixture owning a fresh temporary folder per test; run("sub --flag") runs `lowrank sub --flag`.
class ToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lowrank_tool_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs in the test's folder, so a default output folder (runs/...) lands there, where a test can
  // see it and TearDown removes it.
  ToolResult run(const std::string& args) const {
    const auto out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string bin = std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank";
    const std::string cmd = "cd " + shell_quoted(dir_.string()) + " && " + shell_quoted(bin) + " " + args + " >" +
                            shell_quoted(out) + " 2>" + shell_quoted(err);
    const int status = std::system(cmd.c_str());
    ToolResult r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_bytes(out), r.err = read_bytes(err);
    return r;
  }

  // A failure a user caused: exit 1 and exactly one line on stderr that contains `needle`.
  static void expect_one_line_error(const ToolResult& r, const std::string& needle) {
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }

  // Bad usage (flags wrong, or at odds with each other or with the files): exit 2 and `needle`.
  static void expect_usage_error(const ToolResult& r, const std::string& needle) {
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  }

  std::filesystem::path dir_;
};

// The names a tool test file uses throughout, brought in by one
// `using namespace lowrank::test::tool_names;` instead of a using-declaration each.
namespace tool_names {
namespace fs = std::filesystem;
using lowrank::test::read_bytes;
using lowrank::test::shell_quoted;
using lowrank::test::ToolResult;
using nlohmann::json;
}  // namespace tool_names

}  // namespace lowrank::test
