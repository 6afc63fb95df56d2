#include "serve/api_error.h"

#include <cctype>

namespace mosaic::serve {

std::string ApiError::type() const {
  switch (status_) {
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    default: return status_ >= 500 ? "server_error" : "invalid_request_error";
  }
}

nlohmann::json ApiError::body() const {
  return {{"error",
           {{"message", what()},
            {"type", type()},
            {"param", param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_)},
            {"code", code_.empty() ? nlohmann::json(nullptr) : nlohmann::json(code_)}}}};
}

std::string api_words(const std::string& message) {
  std::string out;
  for (size_t i = 0; i < message.size();) {
    const bool flag = message.compare(i, 2, "--") == 0 && i + 2 < message.size() &&
                      std::islower(static_cast<unsigned char>(message[i + 2])) &&
                      (i == 0 || !std::isalnum(static_cast<unsigned char>(message[i - 1])));
    if (!flag) {
      out += message[i++];
      continue;
    }
    size_t j = i + 2;
    std::string name;
    while (j < message.size() && (std::islower(static_cast<unsigned char>(message[j])) ||
                                  std::isdigit(static_cast<unsigned char>(message[j])) || message[j] == '-'))
      name += message[j] == '-' ? '_' : message[j], ++j;
    out += name == "gen_length" ? "max_tokens" : name;
    i = j;
  }
  return out;
}

}  // namespace mosaic::serve
