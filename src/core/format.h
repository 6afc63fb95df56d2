#pragma once
#include <string>

namespace mosaic {
// 1536 -> "1.50 KiB": sizes in messages and reports.
std::string human_bytes(double bytes);
}  // namespace mosaic
