// Loading a tokenizer.json (and the tokenizer_config.json beside it) into Tokenizer::Impl.
// Every part is checked as it is read; errors name the file and the JSON field.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/error.h"
#include "io/json_file.h"
#include "io/tokenizer_impl.h"
#include "io/unicode_nfc.h"
#include "io/utf8.h"

namespace mosaic::io {

using namespace detail;  // the parts of the tokenizer (tokenizer_*.h)

namespace {

using json = nlohmann::json;

// Tokens are stored by id (Tokenizer::Impl::id_to_text), so the largest id sizes the tables:
// 2^24 - 1 is 64 times the largest real vocabularies (~262k) and keeps a lying file from
// asking for gigabytes (or overflowing int32 at 2^31 - 1).
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// JSON access with errors that name the file and the field
struct Json {
  const std::string& path;
  [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
    MOSAIC_FAIL("{}: field '{}': {}", path, field, msg);
  }
  static const char* kind(const json& v) { return v.type_name(); }
  const json* get(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  const json& need(const json& obj, const char* key, const std::string& field) const {
    const json* v = get(obj, key);
    if (!v) fail(field, "missing");
    return *v;
  }
  std::string str(const json& obj, const char* key, const std::string& field) const {
    const json& v = need(obj, key, field);
    if (!v.is_string()) fail(field, fmt::format("expected a string, found {}", kind(v)));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const char* key, const std::string& field, bool def) const {
    const json* v = get(obj, key);
    if (!v) return def;
    if (!v->is_boolean()) fail(field, fmt::format("expected true/false, found {}", kind(*v)));
    return v->get<bool>();
  }
  int32_t id(const json& v, const std::string& field) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId)
      fail(field, fmt::format("expected a token id (an integer in [0, {}]), found {}", kMaxTokenId, v.dump()));
    return static_cast<int32_t>(v.get<int64_t>());
  }
  void object(const json& v, const std::string& field) const {
    if (!v.is_object()) fail(field, fmt::format("expected an object, found {}", kind(v)));
  }
  void array(const json& v, const std::string& field) const {
    if (!v.is_array()) fail(field, fmt::format("expected an array, found {}", kind(v)));
  }
};

void load_normalizer(const Json& J, const json& n, const std::string& field, Tokenizer::Impl& t) {
  J.object(n, field);
  std::string type = J.str(n, "type", field + ".type");
  if (type == "NFC") {
    t.nfc = true;
  } else if (type == "Sequence") {
    const json& list = J.need(n, "normalizers", field + ".normalizers");
    J.array(list, field + ".normalizers");
    for (size_t i = 0; i < list.size(); ++i)
      load_normalizer(J, list[i], fmt::format("{}.normalizers[{}]", field, i), t);
  } else {
    J.fail(field + ".type",
           fmt::format("normalizer type \"{}\" is not supported (mosaic supports null, NFC, Sequence)", type));
  }
}

SplitBehavior parse_behavior(const Json& J, const std::string& s, const std::string& field) {
  std::string k;
  for (char c : s)
    if (c != '_') k += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (k == "removed") return SplitBehavior::Removed;
  if (k == "isolated") return SplitBehavior::Isolated;
  if (k == "mergedwithprevious") return SplitBehavior::MergedWithPrevious;
  if (k == "mergedwithnext") return SplitBehavior::MergedWithNext;
  if (k == "contiguous") return SplitBehavior::Contiguous;
  J.fail(field, fmt::format("unknown split behavior \"{}\" (expected Removed, Isolated, MergedWithPrevious, "
                            "MergedWithNext or Contiguous)", s));
}

void load_pre_tokenizer(const Json& J, const json& p, const std::string& field, Tokenizer::Impl& t) {
  J.object(p, field);
  std::string type = J.str(p, "type", field + ".type");
  auto where = [&](const std::string& sub) { return fmt::format("{}: field '{}{}'", J.path, field, sub); };
  if (type == "Sequence") {
    const json& list = J.need(p, "pretokenizers", field + ".pretokenizers");
    J.array(list, field + ".pretokenizers");
    for (size_t i = 0; i < list.size(); ++i)
      load_pre_tokenizer(J, list[i], fmt::format("{}.pretokenizers[{}]", field, i), t);
  } else if (type == "ByteLevel") {
    PreTokenizerStep s;
    s.kind = PreTokenizerStep::ByteLevel;
    s.add_prefix_space = J.boolean(p, "add_prefix_space", field + ".add_prefix_space", true);
    if (J.boolean(p, "use_regex", field + ".use_regex", true)) {
      static const auto gpt2 = std::make_shared<Regex>(kGpt2Pattern, false, "GPT-2 pattern");
      s.regex = gpt2;
    }
    t.pre_tokenizer.steps.push_back(std::move(s));
  } else if (type == "Split") {
    PreTokenizerStep s;
    const json& pat = J.need(p, "pattern", field + ".pattern");
    J.object(pat, field + ".pattern");
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      s.regex = std::make_shared<Regex>(pat["Regex"].get<std::string>(), false, where(".pattern.Regex"));
    } else if (pat.contains("String") && pat["String"].is_string()) {
      s.regex = std::make_shared<Regex>(pat["String"].get<std::string>(), true, where(".pattern.String"));
    } else {
      J.fail(field + ".pattern", fmt::format("expected {{\"Regex\": ...}} or {{\"String\": ...}}, found {}", pat.dump()));
    }
    s.behavior = parse_behavior(J, J.str(p, "behavior", field + ".behavior"), field + ".behavior");
    s.invert = J.boolean(p, "invert", field + ".invert", false);
    t.pre_tokenizer.steps.push_back(std::move(s));
  } else if (type == "Digits") {
    PreTokenizerStep s;
    bool individual = J.boolean(p, "individual_digits", field + ".individual_digits", false);
    // Digits splits on Unicode numbers (Rust's char::is_numeric), one per piece or in runs.
    s.regex = std::make_shared<Regex>(individual ? "\\p{N}" : "\\p{N}+", false, where(""));
    s.behavior = SplitBehavior::Isolated;
    t.pre_tokenizer.steps.push_back(std::move(s));
  } else {
    J.fail(field + ".type", fmt::format("pre_tokenizer type \"{}\" is not supported (mosaic supports ByteLevel, "
                                        "Split, Digits, Sequence)", type));
  }
}

void load_decoder(const Json& J, const json& d, const std::string& field, Tokenizer::Impl& t) {
  J.object(d, field);
  std::string type = J.str(d, "type", field + ".type");
  if (type == "ByteLevel") {
    t.decoder.steps.push_back(DecoderStep::ByteLevel);
  } else if (type == "Fuse") {
    t.decoder.steps.push_back(DecoderStep::Fuse);
  } else if (type == "Sequence") {
    const json& list = J.need(d, "decoders", field + ".decoders");
    J.array(list, field + ".decoders");
    for (size_t i = 0; i < list.size(); ++i) load_decoder(J, list[i], fmt::format("{}.decoders[{}]", field, i), t);
  } else {
    J.fail(field + ".type",
           fmt::format("decoder type \"{}\" is not supported (mosaic supports ByteLevel, Fuse, Sequence)", type));
  }
}

void set_token(Tokenizer::Impl& t, int32_t id, const std::string& text) {
  if (static_cast<size_t>(id) >= t.id_to_text.size()) {
    t.id_to_text.resize(id + 1);
    t.has_id.resize(id + 1, 0);
    t.special.resize(id + 1, 0);
  }
  t.id_to_text[id] = text;
  t.has_id[id] = 1;
}

void load_model(const Json& J, const json& m, Tokenizer::Impl& t) {
  J.object(m, "model");
  std::string type = m.contains("type") ? J.str(m, "type", "model.type") : (m.contains("merges") ? "BPE" : "");
  if (type != "BPE")
    J.fail("model.type", fmt::format("model type \"{}\" is not supported (mosaic supports BPE)", type));
  if (J.boolean(m, "byte_fallback", "model.byte_fallback", false))
    J.fail("model.byte_fallback", "byte_fallback BPE (SentencePiece-style) is not supported");
  if (const json* dp = J.get(m, "dropout"); dp && !(dp->is_number() && dp->get<double>() == 0.0))
    J.fail("model.dropout", fmt::format("BPE dropout is not supported (found {})", dp->dump()));
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json* v = J.get(m, k); v && !(v->is_string() && v->get<std::string>().empty()))
      J.fail(std::string("model.") + k, fmt::format("is not supported (found {})", v->dump()));
  t.model.ignore_merges = J.boolean(m, "ignore_merges", "model.ignore_merges", false);
  t.model.fuse_unk = J.boolean(m, "fuse_unk", "model.fuse_unk", false);

  const json& vocab = J.need(m, "vocab", "model.vocab");
  J.object(vocab, "model.vocab");
  t.model.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = J.id(it.value(), "model.vocab[\"" + it.key() + "\"]");
    t.model.vocab[it.key()] = id;
    set_token(t, id, it.key());
  }
  t.model.small_char_id.fill(-1);
  for (const auto& [text, id] : t.model.vocab) {
    size_t i = 0;
    if (text.empty()) continue;
    char32_t cp = utf8_next(text, i);
    if (i == text.size() && cp < t.model.small_char_id.size()) t.model.small_char_id[cp] = id;
  }

  if (const json* unk = J.get(m, "unk_token")) {
    if (!unk->is_string()) J.fail("model.unk_token", "expected a string");
    auto it = t.model.vocab.find(unk->get<std::string>());
    if (it == t.model.vocab.end())
      J.fail("model.unk_token", fmt::format("\"{}\" is not in model.vocab", unk->get<std::string>()));
    t.model.unk_id = it->second;
  }

  const json& merges = J.need(m, "merges", "model.merges");
  J.array(merges, "model.merges");
  t.model.merges.reserve(merges.size());
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& e = merges[r];
    std::string field = fmt::format("model.merges[{}]", r);
    std::string a, b;
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        J.fail(field, fmt::format("expected \"left right\" (two tokens and one space), found \"{}\"", s));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      J.fail(field, fmt::format("expected \"left right\" or [left, right], found {}", e.dump()));
    }
    joined = a + b;
    auto ia = t.model.vocab.find(a), ib = t.model.vocab.find(b), ij = t.model.vocab.find(joined);
    if (ia == t.model.vocab.end() || ib == t.model.vocab.end() || ij == t.model.vocab.end())
      J.fail(field, fmt::format("merge \"{}\" + \"{}\": \"{}\" is not in model.vocab", a, b,
                                ia == t.model.vocab.end() ? a : ib == t.model.vocab.end() ? b : joined));
    uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    t.model.merges[key] = Merge{static_cast<int32_t>(r), ij->second};  // a repeated pair keeps its last rank
  }
}

void load_added_tokens(const Json& J, const json& list, Tokenizer::Impl& t) {
  J.array(list, "added_tokens");
  for (size_t i = 0; i < list.size(); ++i) {
    std::string field = fmt::format("added_tokens[{}]", i);
    const json& e = list[i];
    J.object(e, field);
    AddedToken a;
    a.content = J.str(e, "content", field + ".content");
    a.id = J.id(J.need(e, "id", field + ".id"), field + ".id");
    a.special = J.boolean(e, "special", field + ".special", false);
    a.lstrip = J.boolean(e, "lstrip", field + ".lstrip", false);
    a.rstrip = J.boolean(e, "rstrip", field + ".rstrip", false);
    a.single_word = J.boolean(e, "single_word", field + ".single_word", false);
    a.normalized = J.boolean(e, "normalized", field + ".normalized", !a.special);
    set_token(t, a.id, a.content);
    t.added.by_content[a.content] = a.id;
    t.added.tokens.push_back(std::move(a));
  }
  // Specials are recognised by content, as `tokenizers` does when decoding.
  std::unordered_set<std::string> special_text;
  for (const auto& a : t.added.tokens)
    if (a.special) special_text.insert(a.content);
  for (size_t id = 0; id < t.id_to_text.size(); ++id)
    if (t.has_id[id] && special_text.count(t.id_to_text[id])) t.special[id] = 1;
}

// tokenizer_config.json's bos_token / eos_token: a string, {"content": ...}, or null.
std::optional<std::optional<std::string>> config_token(const json& cfg, const char* key, const std::string& path) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return std::nullopt;  // not set: fall back to common names
  if (it->is_null()) return std::optional<std::string>{};
  if (it->is_string()) return std::optional<std::string>{it->get<std::string>()};
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return std::optional<std::string>{(*it)["content"].get<std::string>()};
  MOSAIC_FAIL("{}: field '{}': expected a string, {{\"content\": ...}} or null, found {}", path, key, it->dump());
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  MOSAIC_CHECK(std::filesystem::is_regular_file(path), "tokenizer file '{}' does not exist or is not a file", path);
  json j = read_json_file(path, "tokenizer.json");
  auto impl = std::make_shared<Impl>();
  Impl& t = *impl;
  t.path = path;
  Json J{path};
  MOSAIC_CHECK(j.is_object(), "{}: expected a JSON object at the top level", path);

  load_model(J, J.need(j, "model", "model"), t);
  if (const json* a = J.get(j, "added_tokens")) load_added_tokens(J, *a, t);
  if (const json* n = J.get(j, "normalizer")) load_normalizer(J, *n, "normalizer", t);
  if (const json* p = J.get(j, "pre_tokenizer")) load_pre_tokenizer(J, *p, "pre_tokenizer", t);
  if (const json* d = J.get(j, "decoder")) {
    load_decoder(J, *d, "decoder", t);
    t.decoder.present = true;
  }
  // post_processor: only adds special tokens (never, here) or adjusts offsets: not needed.

  for (size_t i = 0; i < t.added.tokens.size(); ++i) {
    const AddedToken& a = t.added.tokens[i];
    if (a.content.empty()) continue;
    if (a.normalized)
      t.added.normalized_trie.insert(t.nfc ? detail::nfc(a.content) : a.content, static_cast<int>(i));
    else
      t.added.raw_trie.insert(a.content, static_cast<int>(i));
    if (a.single_word && !t.added.word_start_re) {
      t.added.word_start_re = std::make_shared<Regex>("\\A" + word_char_class(), false, "single_word");
      t.added.word_end_re = std::make_shared<Regex>(word_char_class() + "\\z", false, "single_word");
    }
  }

  Tokenizer tok;
  tok.impl_ = impl;

  // BOS / EOS: tokenizer_config.json beside the file, else common names.
  auto cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::optional<std::optional<std::string>> bos, eos;
  if (std::filesystem::is_regular_file(cfg_path)) {
    json cfg = read_json_file(cfg_path.string(), "tokenizer_config.json");
    MOSAIC_CHECK(cfg.is_object(), "{}: expected a JSON object at the top level", cfg_path.string());
    bos = config_token(cfg, "bos_token", cfg_path.string());
    eos = config_token(cfg, "eos_token", cfg_path.string());
  }
  auto pick = [&](const std::optional<std::optional<std::string>>& set,
                  std::initializer_list<const char*> names) -> std::optional<int32_t> {
    if (set) {
      if (!*set) return std::nullopt;
      int32_t id = tok.token_id(**set);
      return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
    }
    for (const char* n : names)
      if (int32_t id = tok.token_id(n); id >= 0) return id;
    return std::nullopt;
  };
  tok.bos_id = pick(bos, {"<|startoftext|>", "<|begin_of_text|>", "<|beginoftext|>", "<s>", "<bos>"});
  tok.eos_id = pick(eos, {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>"});
  return tok;
}

}  // namespace mosaic::io
