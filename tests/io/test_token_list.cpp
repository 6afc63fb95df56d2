// `--prompt-tokens`: io::parse_token_list (fuzzed by fuzz/fuzz_prompt_tokens.cpp).
#include <chrono>
#include <string>

#include "core/error.h"
#include "io/token_list.h"
#include "test_util.h"

namespace mosaic::test {
namespace {

using io::parse_token_list;
using Ids = std::vector<int32_t>;

std::string error_of(std::string_view text, int64_t vocab) {
  try {
    parse_token_list(text, vocab);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for '" << text.substr(0, 80) << "'";
  return "";
}

TEST(PromptTokens, ParsesCommaSeparatedIds) {
  EXPECT_EQ(parse_token_list("1,2,3", 400), (Ids{1, 2, 3}));
  EXPECT_EQ(parse_token_list(" 0 ,\t399 , 7", 400), (Ids{0, 399, 7}));
  EXPECT_EQ(parse_token_list("2147483647", int64_t{1} << 40), (Ids{2147483647}));
}

TEST(PromptTokens, BadEntriesAreNamed) {
  EXPECT_NE(error_of("", 400).find("--prompt-tokens is empty"), std::string::npos);
  EXPECT_NE(error_of("1,,2", 400).find("entry 2 is empty"), std::string::npos);
  EXPECT_NE(error_of("1,2,", 400).find("entry 3 is empty"), std::string::npos);
  EXPECT_NE(error_of("1, x", 400).find("entry 2 'x' is not an integer token id"), std::string::npos);
  for (const char* s : {"0x10", "+5", "1.0", "1 2", "-"})
    EXPECT_NE(error_of(s, 400).find("not an integer"), std::string::npos) << s;
  EXPECT_NE(error_of("1,400", 400).find("entry 2: id 400 is outside the model's vocabulary [0, 400)"),
            std::string::npos);
  EXPECT_NE(error_of("-1", 400).find("id -1 is outside"), std::string::npos);
  // Past int64 and past int32 (a vocabulary that large is refused by the config, but not here)
  EXPECT_NE(error_of("99999999999999999999", 400).find("id 99999999999999999999 is outside"), std::string::npos);
  EXPECT_NE(error_of("2147483648", int64_t{1} << 40).find("id 2147483648 is outside"), std::string::npos);
}

// A megabyte of ids: parsed in linear time; an error in it quotes the entry, not the list.
TEST(PromptTokens, AMegabyteListParsesOrFailsBriefly) {
  std::string text;
  while (text.size() < (1 << 20)) text += "123,";
  text += "7";
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = parse_token_list(text, 400);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_EQ(ids.size(), (1u << 20) / 4 + 1);
  EXPECT_EQ(ids.back(), 7);

  const std::string one_huge_entry(1 << 20, '9');
  for (const std::string& bad : {text + ",,", text + ",x", one_huge_entry, text + "," + one_huge_entry}) {
    const std::string msg = error_of(bad, 400);
    EXPECT_LT(msg.size(), 200u) << msg.substr(0, 300);
  }
}

}  // namespace
}  // namespace mosaic::test
