#pragma once
// Reading the reference's tensors (tools/reference writes them as safetensors) and comparing
// the engine's floats with them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors.h"

namespace mosaic::test {

inline std::vector<float> tensor_f32(const io::SafetensorsFile& f, const char* name) {
  const io::TensorInfo* t = f.find(name);
  EXPECT_TRUE(t) << name;
  if (!t) return {};
  std::vector<float> v(static_cast<size_t>(t->numel()));
  to_f32(t->dtype, t->data, v.data(), v.size());
  return v;
}

inline std::vector<int32_t> tensor_i32(const io::SafetensorsFile& f, const char* name) {
  const io::TensorInfo* t = f.find(name);
  EXPECT_TRUE(t) << name;
  if (!t) return {};
  std::vector<int32_t> v(static_cast<size_t>(t->numel()));
  std::memcpy(v.data(), t->data, v.size() * sizeof(int32_t));
  return v;
}

// ||a - b|| / ||b||; infinite when a holds a NaN or Inf (e.g. output never written).
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace mosaic::test
