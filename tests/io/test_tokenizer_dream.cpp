// Dream-7B's tokenizer (Qwen2's byte-level BPE: NFC, Qwen2's split pattern with one digit per
// piece, ByteLevel, ChatML special tokens) against pip's `tokenizers`, token for token.
// tests/io/tokenizer_dream_oracle.py builds a Qwen2-shaped tokenizer.json at test time (a small
// BPE trained with exactly that pipeline) and records what `tokenizers` makes of the test
// strings, of random strings, and of the chat texts io::apply_chat_template("dream", ...)
// produced here.
#include <algorithm>
#include <chrono>
#include <optional>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/chat_template.h"
#include "io/tokenizer.h"
#include "test_util.h"

namespace mosaic::test {
namespace {

using json = nlohmann::json;

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 160)) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return s.size() > 160 ? out + fmt::format("... ({} bytes)", s.size()) : out;
}

// Chat texts made by mosaic's template; the oracle encodes these exact strings with pip.
std::vector<std::string> dream_chat_texts() {
  using Messages = std::vector<std::pair<std::string, std::string>>;
  return {
      // The CLI's case: one user turn, default system prompt, generation prompt.
      io::apply_chat_template("dream", Messages{{"user", "Hi"}}, true),
      io::apply_chat_template("dream",
                              Messages{{"system", "Be brief."},
                                       {"user", "What's 12+30?"},
                                       {"assistant", "42."},
                                       {"user", "And 7\xC3\x97" "6? I'M SURE it's 42 \xF0\x9F\x98\x80 cafe\xCC\x81"}},
                              true),
      io::apply_chat_template("dream",
                              Messages{{"user", "  spaces\n\nand\ttabs  \r\n"},
                                       {"assistant", "\xE4\xB8\xAD\xE6\x96\x87 1234567890\n\n\n"}},
                              false),
      // Special tokens inside a message are parsed as specials, as in `tokenizers`.
      io::apply_chat_template("dream", Messages{{"user", "say <|mask|><|mask|> and <|im_end|> and <tool_call>"}},
                              true),
  };
}

class TokenizerDream : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerDream, MatchesHuggingFace) {
  const std::string variant = GetParam();
  auto dir = scratch_dir("tokenizer_dream_" + variant);
  const auto chats = dream_chat_texts();
  write_file(dir / "inputs.json", json{{"texts", chats}}.dump());
  run_python("tests/io/tokenizer_dream_oracle.py", "\"" + dir.string() + "\" " + variant);
  json oracle = json::parse(read_file(dir / "oracle.json"));
  auto tok = io::Tokenizer::load((dir / "tokenizer.json").string());

  ASSERT_EQ(tok.vocab_size(), oracle["vocab_size"].get<size_t>());
  ASSERT_GE(tok.vocab_size(), 1000u);  // a real merge table, not a toy
  const int32_t im_start = tok.token_id("<|im_start|>"), im_end = tok.token_id("<|im_end|>"),
                mask = tok.token_id("<|mask|>");
  ASSERT_GE(im_start, 0);
  ASSERT_GE(im_end, 0);
  ASSERT_GE(mask, 0);

  // encode (special tokens parsed and not), decode (with and without specials), round trip
  size_t checked = 0;
  auto check = [&](const json& c, const std::string& what) {
    const std::string text = c["text"];
    const auto want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), want) << variant << " " << what << ": encode \"" << printable(text) << "\"";
    EXPECT_EQ(tok.encode(text, false), c["ids_plain"].get<std::vector<int32_t>>())
        << variant << " " << what << ": encode(parse_special=false) \"" << printable(text) << "\"";
    EXPECT_EQ(tok.decode(want), c["decode"].get<std::string>())
        << variant << " " << what << ": decode of \"" << printable(text) << "\"";
    EXPECT_EQ(tok.decode(want, true), c["decode_skip"].get<std::string>())
        << variant << " " << what << ": decode(skip_special) of \"" << printable(text) << "\"";
    ++checked;
  };
  for (const auto& c : oracle["cases"]) check(c, "case");
  for (const auto& c : oracle["random_cases"]) check(c, "random string");
  EXPECT_GE(checked, 600u);

  // Byte-level BPE is lossless up to NFC: text already in NFC comes back unchanged.
  for (const std::string text : {"I'M  late,\tYOU'RE late\r\n\n  1234567890 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                 "\xE5\xAD\xA6\xE8\x80\x8C\xE6\x97\xB6\xE4\xB9\xA0\xE4\xB9\x8B caf\xC3\xA9   "}) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text) << printable(text);
  }

  // Qwen2 splits every digit: ten digits are ten tokens, whatever the merges learned.
  EXPECT_EQ(tok.encode("1234567890").size(), 10u);

  // The chat template's text, encoded with special-token parsing, as pip encodes it.
  EXPECT_EQ(chats[0], oracle["chatml"].get<std::string>()) << "io::apply_chat_template(\"dream\") changed";
  ASSERT_EQ(oracle["extra_cases"].size(), chats.size());
  for (size_t k = 0; k < chats.size(); ++k) {
    const json& c = oracle["extra_cases"][k];
    ASSERT_EQ(c["text"].get<std::string>(), chats[k]);
    check(c, fmt::format("chat {}", k));
  }
  const auto chat_ids = tok.encode(chats[0]);
  EXPECT_EQ(std::count(chat_ids.begin(), chat_ids.end(), im_start), 3);
  EXPECT_EQ(std::count(chat_ids.begin(), chat_ids.end(), im_end), 2);
  EXPECT_EQ(chat_ids.front(), im_start);
  const auto plain = tok.encode(chats[0], false);  // specials as text: none of their ids
  EXPECT_EQ(std::count_if(plain.begin(), plain.end(), [&](int32_t id) { return tok.is_special(id); }), 0);
  EXPECT_EQ(tok.decode(chat_ids), chats[0]);
  EXPECT_EQ(tok.decode(chat_ids, true), "system\nYou are a helpful assistant.\nuser\nHi\nassistant\n");

  // decode of random id sequences (partial UTF-8 sequences, specials in the middle, ...)
  for (const auto& c : oracle["random_decodes"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.decode(ids), c["decode"].get<std::string>()) << variant << ": decode " << c["ids"].dump();
    EXPECT_EQ(tok.decode(ids, true), c["decode_skip"].get<std::string>()) << variant << ": decode " << c["ids"].dump();
  }

  // lookups, specials (the fim / tool_call tokens are added but not special), BOS / EOS
  for (const auto& t : oracle["tokens"]) {
    int32_t id = t[0];
    std::string text = t[1];
    EXPECT_EQ(tok.token_text(id), text);
    EXPECT_EQ(tok.token_id(text), id) << printable(text);
  }
  std::vector<int32_t> special = oracle["special_ids"];
  for (size_t id = 0; id < tok.vocab_size(); ++id)
    EXPECT_EQ(tok.is_special(static_cast<int32_t>(id)),
              std::find(special.begin(), special.end(), static_cast<int32_t>(id)) != special.end())
        << "id " << id;
  EXPECT_TRUE(tok.is_special(mask));
  EXPECT_FALSE(tok.is_special(tok.token_id("<tool_call>")));
  EXPECT_EQ(tok.bos_id, std::optional<int32_t>(oracle["bos_id"].get<int32_t>()));
  EXPECT_EQ(tok.eos_id, std::optional<int32_t>(oracle["eos_id"].get<int32_t>()));

  // A long prompt: timing for the record.
  const std::string longtext = oracle["cases"].back()["text"];
  auto t0 = std::chrono::steady_clock::now();
  size_t n = io::Tokenizer::load((dir / "tokenizer.json").string()).encode(longtext).size();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[dream %s] load + encode: %zu tokens from %zu bytes in %.1f ms\n", variant.c_str(), n,
              longtext.size(), s * 1e3);
}

INSTANTIATE_TEST_SUITE_P(TokenizerQwen2, TokenizerDream, ::testing::Values("post_bytelevel", "post_null"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace mosaic::test
