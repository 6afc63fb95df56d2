#include "io/tokenizer_bpe.h"

#include <queue>

#include "io/utf8.h"

namespace mosaic::io::detail {

int32_t BpeModel::char_id(std::string_view ch) const {
  size_t i = 0;
  char32_t cp = utf8_next(ch, i);
  if (cp < small_char_id.size()) return small_char_id[cp];
  auto it = vocab.find(ch);
  return it == vocab.end() ? -1 : it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = vocab.find(word); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  constexpr size_t kMaxCachedWord = 256, kMaxCacheEntries = 1 << 17;
  bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (auto it = cache.find(word); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t mark = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(word), std::vector<int32_t>(out.begin() + mark, out.end()));
  }
}

// The BPE merge loop: repeatedly merge the adjacent pair with the lowest merge rank (the
// leftmost one on ties), via a heap of candidate pairs; stale entries are skipped.
void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Sym> sym;
  sym.reserve(word.size());
  // Initial symbols: one per character; characters outside the vocab become unk (fused if
  // fuse_unk) or are dropped when there is no unk token, as in `tokenizers`.
  int32_t pending_unk = -1;
  auto add = [&](int32_t id) { sym.push_back({id, static_cast<int32_t>(sym.size()) - 1, -1, true}); };
  for (size_t i = 0; i < word.size();) {
    size_t n = utf8_seq_len(static_cast<unsigned char>(word[i]));
    int32_t id = char_id(word.substr(i, n));
    i += n;
    if (id >= 0) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(id);
    } else if (unk_id) {
      if (pending_unk >= 0 && !fuse_unk) add(pending_unk);
      pending_unk = *unk_id;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  for (size_t k = 0; k + 1 < sym.size(); ++k) sym[k].next = static_cast<int32_t>(k + 1);

  struct Cand {
    int32_t rank, pos, new_id;
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::priority_queue<Cand> heap;
  for (size_t k = 0; k + 1 < sym.size(); ++k)
    if (const Merge* m = lookup(sym[k].id, sym[k + 1].id)) heap.push({m->rank, static_cast<int32_t>(k), m->new_id});

  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& s = sym[c.pos];
    if (!s.alive || s.next < 0) continue;
    Sym& r = sym[s.next];
    const Merge* m = lookup(s.id, r.id);
    if (!m || m->new_id != c.new_id) continue;  // stale
    s.id = c.new_id;
    r.alive = false;
    s.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.pos;
    if (s.prev >= 0)
      if (const Merge* pm = lookup(sym[s.prev].id, s.id)) heap.push({pm->rank, s.prev, pm->new_id});
    if (s.next >= 0)
      if (const Merge* nm = lookup(s.id, sym[s.next].id)) heap.push({nm->rank, c.pos, nm->new_id});
  }
  for (const Sym& s : sym)
    if (s.alive) out.push_back(s.id);
}

}  // namespace mosaic::io::detail
