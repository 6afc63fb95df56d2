// Unicode NFC: canonical decomposition, canonical ordering, canonical composition. The UCD
// data is in unicode_nfc_tables.cpp; Hangul syllables are handled algorithmically here.
#include "io/unicode_nfc.h"

#include <algorithm>

#include "io/unicode_nfc_tables.h"
#include "io/utf8.h"

namespace mosaic::io::detail {
namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {  // Hangul syllables decompose algorithmically
    char32_t s = cp - kSBase;
    out += kLBase + s / kNCount;
    out += kVBase + (s % kNCount) / kTCount;
    if (s % kTCount) out += kTBase + s % kTCount;
    return;
  }
  if (const uint32_t* d = canonical_decomposition(cp)) {
    decompose(d[1], out);
    if (d[2]) decompose(d[2], out);
    return;
  }
  out += cp;
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  return canonical_composition(a, b);
}

}  // namespace

std::string nfc(std::string_view s) {
  // Text below U+0300 is always in NFC (checked against the UCD when the tables were made).
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0xCC; }))
    return std::string(s);
  std::u32string d;
  d.reserve(s.size());
  for (size_t i = 0; i < s.size();) decompose(utf8_next(s, i), d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 1; i < d.size(); ++i) {
    int c = combining_class(d[i]);
    if (c == 0) continue;
    for (size_t j = i; j > 0 && combining_class(d[j - 1]) > c; --j) std::swap(d[j - 1], d[j]);
  }
  // Canonical composition (UAX #15).
  std::u32string r;
  r.reserve(d.size());
  if (!d.empty()) {
    r.push_back(d[0]);
    size_t starter = 0;
    int last_class = combining_class(d[0]) ? 256 : 0;
    for (size_t i = 1; i < d.size(); ++i) {
      char32_t ch = d[i];
      int cc = combining_class(ch);
      char32_t comp = compose_pair(r[starter], ch);
      if (comp && (last_class < cc || last_class == 0)) {
        r[starter] = comp;
        continue;
      }
      if (cc == 0) starter = r.size();
      last_class = cc;
      r.push_back(ch);
    }
  }
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : r) utf8_append(out, cp);
  return out;
}

}  // namespace mosaic::io::detail
