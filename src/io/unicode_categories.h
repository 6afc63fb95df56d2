#pragma once
// General categories of the code points that Unicode 15.0 to 16.0 assigned, as the Oniguruma
// in pip's `tokenizers` sees them. The system PCRE2 may be older (10.42 has Unicode 14.0): the
// tokenizer's regexes add these to \p{..}, \w and \d so that both engines split text alike.
#include <string>
#include <string_view>

namespace mosaic::io::detail {

// The code points added after Unicode 14.0 whose general category starts with `category`
// ("L", "Lu", "N", "Nd", ...), as the inside of a PCRE2 character class ("\x{1C89}\x{A7CB}-\x{A7CD}").
// Empty when there are none.
std::string added_code_points(std::string_view category);

}  // namespace mosaic::io::detail
