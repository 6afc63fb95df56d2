// libFuzzer target: a .safetensors file of arbitrary bytes. SafetensorsFile::open must either
// throw mosaic::Error or return tensors whose bytes all lie inside the file: every byte of every
// tensor is read (ASan reports any read past the mapping).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/dev/shm/mosaic_fuzz_" + std::to_string(getpid()) + ".safetensors";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    auto f = mosaic::io::SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const mosaic::io::TensorInfo& t : f.tensors()) {
      const auto* p = reinterpret_cast<const volatile uint8_t*>(t.data);
      for (size_t i = 0; i < t.nbytes; ++i) sink = sink ^ p[i];
      (void)t.numel();
    }
    (void)f.metadata();
  } catch (const mosaic::Error&) {
  }
  return 0;
}
