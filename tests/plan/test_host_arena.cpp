// The host arena keeps the persistent prefix of a plan when it grows, and nothing else.
#include <gtest/gtest.h>

#include <cstring>

#include "memory/host_arena.h"

namespace mosaic {
namespace {

TEST(HostArena, GrowingKeepsThePersistentPrefix) {
  HostArena a;
  a.reserve(1000);
  for (size_t i = 0; i < 1000; ++i) a.data()[i] = static_cast<std::byte>(i * 7);
  const std::byte* before = a.data();
  a.reserve(800, 300);  // smaller than the capacity: nothing moves
  EXPECT_EQ(a.data(), before);
  a.reserve(1 << 20, 300);
  ASSERT_GE(a.capacity(), size_t{1} << 20);
  for (size_t i = 0; i < 300; ++i) ASSERT_EQ(a.data()[i], static_cast<std::byte>(i * 7)) << i;
}

}  // namespace
}  // namespace mosaic
