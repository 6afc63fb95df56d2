#pragma once
// Helpers shared by the tests: where the sources and fixtures are, a scratch
// folder per test, and running the Python oracles (pip's safetensors/tokenizers).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <sys/wait.h>
#include <unistd.h>

namespace mosaic::test {

namespace detail {

inline bool has_fixtures(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_directory(dir / "tests" / "fixtures", ec);
}

// The first folder from `start` upward that holds tests/fixtures and CMakeLists.txt; empty if none.
inline std::filesystem::path find_tree_upward(std::filesystem::path start) {
  std::error_code ec;
  start = std::filesystem::absolute(start, ec);
  if (ec) return {};
  for (auto dir = start.lexically_normal(); !dir.empty(); dir = dir.parent_path()) {
    if (has_fixtures(dir) && std::filesystem::is_regular_file(dir / "CMakeLists.txt", ec)) return dir;
    if (dir == dir.parent_path()) break;  // the root
  }
  return {};
}

// The source tree without the environment's help: the build's path when it is still there,
// else the tree the running executable or the current directory lies in.
inline std::filesystem::path locate_source_dir() {
  const std::filesystem::path built(MOSAIC_SOURCE_DIR);
  if (has_fixtures(built)) return built;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec)
    if (auto dir = find_tree_upward(exe.parent_path()); !dir.empty()) return dir;
  const auto cwd = std::filesystem::current_path(ec);
  if (!ec)
    if (auto dir = find_tree_upward(cwd); !dir.empty()) return dir;
  return {};
}

}  // namespace detail

// The source tree (fixtures, models/, tools/). Test binaries built on one machine run from a
// copy of the tree elsewhere (the GPU machine), so, in order: MOSAIC_SOURCE_DIR in the
// environment; the build's source path if it holds tests/fixtures; the first folder above
// the executable, then above the current directory, holding tests/fixtures and
// CMakeLists.txt. Finding none fails the calling test.
inline std::filesystem::path source_dir() {
  const char* env = std::getenv("MOSAIC_SOURCE_DIR");
  if (env && *env) return std::filesystem::path(env);
  static const std::filesystem::path found = detail::locate_source_dir();
  if (found.empty()) {
    ADD_FAILURE() << "cannot find mosaic's source tree (a folder with tests/fixtures and CMakeLists.txt): not at "
                  << MOSAIC_SOURCE_DIR << " (the build's path), nor above the test executable or the current "
                  << "directory. Set MOSAIC_SOURCE_DIR to the tree's root.";
    return std::filesystem::path(MOSAIC_SOURCE_DIR);
  }
  return found;
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
