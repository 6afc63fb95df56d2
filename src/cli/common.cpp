#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"

namespace mosaic::cli {

namespace fs = std::filesystem;

namespace {
int g_exit_code = 0;
constexpr const char* kDefaultModel = "models/mosaic-tiny";
}  // namespace

int exit_code() { return g_exit_code; }
void set_exit_code(int code) { g_exit_code = code; }

std::string resolve_model_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("MOSAIC_MODEL"); env && *env) return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path() / kDefaultModel);
    candidates.push_back(exe.parent_path().parent_path() / kDefaultModel);
  }
  candidates.push_back(fs::path(MOSAIC_SOURCE_DIR) / kDefaultModel);
  for (const auto& c : candidates)
    if (fs::exists(c / "config.json")) return c.string();
  MOSAIC_FAIL("no --model given and the shipped model '{}' was not found next to the binary or in {}; pass "
              "--model DIR (a directory with config.json, *.safetensors and tokenizer.json)",
              kDefaultModel, MOSAIC_SOURCE_DIR);
}

std::string resolve_backend(const std::string& flag) {
  if (!flag.empty() && flag != "auto") return flag;
#ifdef MOSAIC_CUDA
  try {
    make_cuda_backend(0);
    return "cuda";
  } catch (const Error&) {
  }
#endif
  return "cpu";
}

size_t parse_memory(const std::string& text, std::optional<size_t> free_bytes, const char* flag) {
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  MOSAIC_CHECK(end != s.c_str() && v > 0 && std::isfinite(v),
               "{} '{}' is not a memory size: use bytes (e.g. 80GiB, 512MiB, 1.5GB) or a fraction of free "
               "memory (e.g. 0.9)", flag, text);
  if (unit.empty() && v <= 1.0) {
    MOSAIC_CHECK(free_bytes.has_value(), "{} '{}' is a fraction of free device memory, but no device is in use "
                 "here; give bytes instead (e.g. 80GiB)", flag, text);
    return static_cast<size_t>(v * static_cast<double>(*free_bytes));
  }
  double mul = 1;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kb") mul = 1e3;
  else if (unit == "m" || unit == "mb") mul = 1e6;
  else if (unit == "g" || unit == "gb") mul = 1e9;
  else if (unit == "t" || unit == "tb") mul = 1e12;
  else if (unit == "kib") mul = 1024.0;
  else if (unit == "mib") mul = 1024.0 * 1024;
  else if (unit == "gib") mul = 1024.0 * 1024 * 1024;
  else if (unit == "tib") mul = 1024.0 * 1024 * 1024 * 1024;
  else MOSAIC_FAIL("{} '{}': unknown unit '{}' (use B, KB, MB, GB, KiB, MiB, GiB)", flag, text, unit);
  return static_cast<size_t>(v * mul);
}

void check_sparse_flags(const std::vector<CLI::Option*>& flags, bool sparse) {
  for (const CLI::Option* o : flags)
    MOSAIC_CHECK(sparse || o->count() == 0, "{} applies to the sparse cache only: it needs --cache sparse",
                 o->get_name());
}

size_t backend_overhead(const std::string& backend) {
  // CUDA context, cuBLASLt and cuDNN workspaces: measured on H100, rounded up.
  return backend == "cpu" ? 0 : (size_t{1} << 30);
}

void add_taming_flags(CLI::App* c, TamingFlags& f) {
  c->add_option("--chunk-min-rows", f.min_rows,
                "Peak taming: split the regions at the memory peak while their chunks keep at least this many "
                "rows, even when the step already fits; lower = lower peak, smaller GEMMs (0 = chunk only to "
                "fit the budget)")
      ->capture_default_str();
  c->add_option("--tame-target", f.target,
                "Peak taming's goal, peak over time-weighted average live memory: the planner keeps the largest "
                "chunks (floors of 8x, 4x, 2x --chunk-min-rows, then the floor) whose step meets it, trading a "
                "flat but higher arena for bigger, faster GEMMs (0 = always tame down to --chunk-min-rows)")
      ->capture_default_str();
}

void check_taming(const TamingFlags& f) {
  MOSAIC_CHECK(f.min_rows >= 0, "--chunk-min-rows must be >= 0 (0 = chunk only to fit the budget), got {}", f.min_rows);
  MOSAIC_CHECK(f.target == 0 || f.target >= 1.0,
               "--tame-target is a peak-to-average ratio: >= 1 (e.g. 1.15), or 0 to always tame down to the floor; "
               "got {}", f.target);
}

parallel::Exchange exchange_for(const std::string& flag, const io::ModelConfig& c, const std::string& model,
                                int ranks, const std::string& ranks_text) {
  const int heads = static_cast<int>(c.n_heads), kv_heads = static_cast<int>(c.n_kv_heads);
  const parallel::Exchange e = parallel::parse_exchange(flag);
  MOSAIC_CHECK(e != parallel::Exchange::AllToAll || parallel::heads_split(heads, kv_heads, ranks),
               "--exchange all-to-all on {}: {}'s {} query heads and {} key/value heads do not split into {} groups "
               "(the query heads must divide by {}, the key/value heads by {} or {} by them); use --exchange "
               "all-gather or auto",
               ranks_text, model, heads, kv_heads, ranks, ranks, ranks, ranks);
  return parallel::resolve_exchange(e, heads, kv_heads, ranks);
}

}  // namespace mosaic::cli
