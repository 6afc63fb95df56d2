#pragma once
// The BPE model: vocab, merge ranks, and the merge loop that turns one pre-tokenized word
// into ids (with a cache of words already seen).
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mosaic::io::detail {

// Lets maps keyed by std::string be searched with a std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct Merge {
  int32_t rank, new_id;
};

struct BpeModel {
  StringMap vocab;
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) -> rank, result
  bool ignore_merges = false;
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  std::array<int32_t, 0x800> small_char_id{};  // id of the one-character token for code points < 0x800

  // Appends the ids of `word` (one pre-token) to `out`.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  int32_t char_id(std::string_view ch) const;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;
};

}  // namespace mosaic::io::detail
