#pragma once
// Dimensions as affine expressions of the step's symbolic sizes, so one graph serves every
// step: L = tokens in the sequence, M = rows that reach the LM head (masked candidates).
#include <cstdint>
#include <string>

namespace mosaic {

struct Dims {
  int64_t L = 0;
  int64_t M = 0;
};

struct SymDim {
  int64_t c = 0, l = 0, m = 0;  // value = c + l*L + m*M

  static SymDim constant(int64_t v) { return {v, 0, 0}; }
  static SymDim tokens() { return {0, 1, 0}; }
  static SymDim masked() { return {0, 0, 1}; }
  int64_t eval(const Dims& d) const { return c + l * d.L + m * d.M; }
  bool is_constant() const { return l == 0 && m == 0; }
  bool operator==(const SymDim&) const = default;
  std::string str() const;
};

}  // namespace mosaic
