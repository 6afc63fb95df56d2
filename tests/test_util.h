#pragma once
// Helpers shared by the tests: where the sources and fixtures are, a scratch
// folder per test, and running the Python oracles (pip's safetensors/tokenizers).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace mosaic::test {

// MOSAIC_SOURCE_DIR in the environment wins over the build's path: test binaries built on
// one machine run from a copy of the tree on the GPU machine.
inline std::filesystem::path source_dir() {
  const char* env = std::getenv("MOSAIC_SOURCE_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path(MOSAIC_SOURCE_DIR);
}
inline std::filesystem::path fixtures_dir() { return source_dir() / "tests" / "fixtures"; }

// A fresh, empty folder for the calling test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::path(MOSAIC_TEST_TMP) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// Runs `python3 script args...` from the source tree; returns its stdout.
// Fails the test (not skips) when Python or its modules are missing: CI installs them.
inline std::string run_python(const std::string& script_rel, const std::string& args) {
  // ctest runs every test in its own process, in parallel: the pid keeps their files apart.
  static int counter = 0;
  auto out = std::filesystem::path(MOSAIC_TEST_TMP) /
             ("py_out_" + std::to_string(::getpid()) + "_" + std::to_string(++counter) + ".txt");
  std::filesystem::create_directories(out.parent_path());
  std::string cmd = std::string("\"") + MOSAIC_PYTHON + "\" \"" + (source_dir() / script_rel).string() +
                    "\" " + args + " > \"" + out.string() + "\"";
  int rc = std::system(cmd.c_str());
  std::ifstream f(out);
  std::stringstream ss;
  ss << f.rdbuf();
  if (rc != 0) ADD_FAILURE() << "python oracle failed (rc=" << rc << "): " << cmd;
  return ss.str();
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary);
  f << data;
}

struct CommandResult {
  int rc = -1;
  std::string out, err;
};

// Runs a shell command, capturing stdout and stderr separately.
inline CommandResult run_command(const std::string& cmd) {
  static int counter = 0;
  auto dir = std::filesystem::path(MOSAIC_TEST_TMP) / "cmd";
  std::filesystem::create_directories(dir);
  // Named by pid as well: ctest runs tests as parallel processes, each counting from 1.
  const std::string id = std::to_string(::getpid()) + "_" + std::to_string(++counter);
  auto out = dir / ("out" + id), err = dir / ("err" + id);
  std::string full = cmd + " > \"" + out.string() + "\" 2> \"" + err.string() + "\"";
  int status = std::system(full.c_str());
  CommandResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

inline std::string mosaic_binary() { return MOSAIC_BINARY; }

}  // namespace mosaic::test
