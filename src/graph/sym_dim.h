#pragma once
// Dimensions as affine expressions of the step's symbolic sizes, so one graph serves every
// step: L = rows the step runs (the whole sequence, or a cached step's block), M = rows that
// reach the LM head (masked candidates). Cached decoding adds two sizes that hold for a whole
// generation: K = rows of each layer's key/value cache, B = rows of the block being denoised.
// A step sharded across ranks (issue 17) runs L of the sequence's rows per rank and exchanges
// what attention needs for every row of the sequence: K is then the whole sequence.
#include <compare>
#include <cstdint>
#include <string>

namespace mosaic {

struct Dims {
  int64_t L = 0;
  int64_t M = 0;
  int64_t K = 0;
  int64_t B = 0;
  auto operator<=>(const Dims&) const = default;
};

struct SymDim {
  int64_t c = 0, l = 0, m = 0, k = 0, b = 0;  // value = c + l*L + m*M + k*K + b*B

  static SymDim constant(int64_t v) { return {v, 0, 0}; }
  static SymDim tokens() { return {0, 1, 0}; }
  static SymDim masked() { return {0, 0, 1}; }
  static SymDim cache() { return {0, 0, 0, 1, 0}; }
  static SymDim block() { return {0, 0, 0, 0, 1}; }
  int64_t eval(const Dims& d) const { return c + l * d.L + m * d.M + k * d.K + b * d.B; }
  bool is_constant() const { return l == 0 && m == 0 && k == 0 && b == 0; }
  // Constant within one generation: the same in every step's plan (persistent tensors).
  bool is_per_generation() const { return l == 0 && m == 0 && b == 0; }
  SymDim operator+(const SymDim& o) const { return {c + o.c, l + o.l, m + o.m, k + o.k, b + o.b}; }
  bool operator==(const SymDim&) const = default;
  std::string str() const;
};

}  // namespace mosaic
