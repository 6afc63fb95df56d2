#pragma once
// An error the HTTP API answers with: its status (400, 401, 404, 429, 500, 503) and an
// OpenAI-style body {"error": {"message", "type", "param", "code"}}.
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace mosaic::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // invalid_request_error, authentication_error, rate_limit_error, server_error
  std::string type() const;
  nlohmann::json body() const;

 private:
  int status_;
  std::string param_, code_;
};

// The library's messages name CLI flags (--gen-length, --block-length); the API's fields are
// max_tokens, block_length. Rewrites one into the other.
std::string api_words(const std::string& message);

}  // namespace mosaic::serve
