#pragma once
// One error type for the whole engine. Messages are written for the user: they name
// the file, tensor, field or flag at fault and, where there is one, the fix.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace mosaic {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Thrown when a plan cannot fit the memory budget; the CLI maps it to exit code 3.
class OutOfBudget : public Error {
 public:
  using Error::Error;
};

[[noreturn]] inline void fail(std::string msg) { throw Error(std::move(msg)); }

}  // namespace mosaic

#define MOSAIC_CHECK(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) ::mosaic::fail(::fmt::format(__VA_ARGS__));      \
  } while (0)

#define MOSAIC_FAIL(...) ::mosaic::fail(::fmt::format(__VA_ARGS__))
