#!/usr/bin/env python3
"""Oracle for tests/io/test_tokenizer_dream.cpp: Dream-7B's tokenizer (Qwen2's byte-level BPE)
as pip's `tokenizers` runs it.

    tokenizer_dream_oracle.py OUT_DIR VARIANT

OUT_DIR/inputs.json (written by the C++ test) holds {"texts": [...]}: extra strings to encode,
such as what mosaic's chat template produced. VARIANT picks what differs between the Qwen2
tokenizer.json files in use: "post_bytelevel" (post_processor ByteLevel, merges as [a, b]
pairs, as `tokenizers` writes them today) or "post_null" (no post_processor, merges as
"a b" strings, as in the older Qwen2 files).

Trains a small BPE on the public-domain text below with Qwen2's exact pipeline:
  normalizer     NFC
  pre_tokenizer  Sequence[Split(QWEN2_PATTERN, Isolated), ByteLevel(no prefix space, no regex)]
  model          BPE, no unk, no byte fallback, empty subword prefix/suffix
  decoder        ByteLevel
  added tokens   Qwen2.5's (<|endoftext|>, <|im_start|>, <|im_end|>, ...; the fim/tool ones
                 are not special) and Dream's <|beginoftext|>, <|mask|>, with ids after the
                 vocab as in the real file
writes OUT_DIR/tokenizer.json and tokenizer_config.json, reloads the file, and writes
OUT_DIR/oracle.json: encode ids (with and without special-token parsing) and decodes for
every test string, decodes of random id sequences, token texts, special ids, BOS/EOS ids.
"""
import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers import models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_oracle import decode_cases, encode_case, vocabulary  # noqa: E402

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# (content, special), in id order after the vocab: Qwen2.5's added tokens, then Dream's.
ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
         ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
         ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
         ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
         ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
         ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
         ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
         ("<|beginoftext|>", True), ("<|mask|>", True)]

# Public-domain text: Austen, Carroll, Melville, the US Declaration of Independence, and short
# passages in other scripts (Goethe, Hugo, Tolstoy, Homer, the Analects, Sōseki, the Korean
# national anthem text of 1896-1907, Tagore).
CORPUS = """It is a truth universally acknowledged, that a single man in possession of a good fortune, must be
in want of a wife. However little known the feelings or views of such a man may be on his first
entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he
is considered the rightful property of some one or other of their daughters.
"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"
Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here, and
she told me all about it." Mr. Bennet made no answer. "Do you not want to know who has taken it?"
cried his wife impatiently. "You want to tell me, and I have no objection to hearing it."

Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to
do: once or twice she had peeped into the book her sister was reading, but it had no pictures or
conversations in it, 'and what is the use of a book,' thought Alice 'without pictures or
conversations?' So she was considering in her own mind (as well as she could, for the hot day made
her feel very sleepy and stupid), whether the pleasure of making a daisy-chain would be worth the
trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran close
by her. 'Oh dear! Oh dear! I shall be late!' I'M late, I'M late... You'RE late, WE'LL see, THEY'D know.

Call me Ishmael. Some years ago--never mind how long precisely--having little or no money in my
purse, and nothing particular to interest me on shore, I thought I would sail about a little and see
the watery part of the world. It is a way I have of driving off the spleen and regulating the circulation.

When in the Course of human events, it becomes necessary for one people to dissolve the political
bands which have connected them with another, and to assume among the powers of the earth, the
separate and equal station to which the Laws of Nature and of Nature's God entitle them, a decent
respect to the opinions of mankind requires that they should declare the causes which impel them to
the separation. In Congress, July 4, 1776. Signed by 56 delegates; 13 united States of America.

    def fib(n):
\t\tif n < 2:\r\n\t\t\treturn n
        return fib(n - 1) + fib(n - 2)   # 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144

Über allen Gipfeln ist Ruh', in allen Wipfeln spürest du kaum einen Hauch; die Vögelein schweigen im Walde.
Ô temps, suspends ton vol ! Nous étions à l'étude, quand le proviseur entra, suivi d'un nouveau.
Все счастливые семьи похожи друг на друга, каждая несчастливая семья несчастлива по-своему.
Ἄνδρα μοι ἔννεπε, Μοῦσα, πολύτροπον, ὃς μάλα πολλὰ πλάγχθη, ἐπεὶ Τροίης ἱερὸν πτολίεθρον ἔπερσεν.
学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？
吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。
동해 물과 백두산이 마르고 닳도록 하느님이 보우하사 우리나라 만세.
जहाँ मन भय से मुक्त हो और मस्तक ऊँचा हो, जहाँ ज्ञान मुक्त हो।
Emoji: 😀 😂 👍🏽 🚀 ❤️ 🇯🇵 👨‍👩‍👧‍👦 — café, naïve, résumé, São Paulo, Zürich, Ærø, Łódź.
"""
# Not from a book: letters and digits that Unicode 15.0 and 16.0 added, and emoji after spaces,
# so that the merges span them (a test string then splits differently if mosaic's regex does not
# know them as letters or digits).
CORPUS += "".join(["中\U00031350文 \U0002ebf0字 \U00011f04\U00011f05\U00011f06 \U0001e4d0\U0001e4d1 a\u1c89b "
                   "\U00010d50\U00010d51 \U00011f50 \U0001e4f0 \U0001ccf0 😀 🚀 👍 🎉\n"] * 4)

CHATML = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")

TEST_STRINGS = [
    # whitespace: Qwen2's pattern keeps a run of spaces apart from the word after it
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r", " \n", "\n ", " \t \n  x",
    "a  b", "a   b", "a    b", "a \tb", "a\t\tb", "a\n\nb", "a \n b", "a\r\n\r\nb", "end   ", "end\n\n",
    "   leading", "\tTabbed\tvalues\t\n", "line1\r\nline2\rline3\n\n  \n", "x\u00a0y\u3000z \u2028 w\u2029v",
    "a\x85b \x85\x85 c", "a\u180eb \u180e c", "zero\u200bwidth", "nb\u00a0\u00a0sp", "\u2003em\u2002en\u2009thin",
    # digits: every digit is its own pre-token
    "0", "7", "42", "123", "12345", "1234567890", "3.14159", "2,718,281", "-17", "+1e-9", "1/2",
    "v1.2.3", "x1y22z333", "Call 555-0100 at 10:30pm", "1 22 333 4444 55555", "in 1776 and 2024.",
    "１２３ fullwidth", "²³ superscripts", "Ⅻ roman", "½ ¾ fractions", "٠١٢٣ arabic-indic", "१२३ devanagari",
    "1️⃣ 2️⃣ keycaps", "#️⃣", "100%", "$9.99", "€42", "¥1000",
    # contractions, mixed case (the (?i:...) group)
    "don't", "DON'T", "Don'T", "it's", "IT'S", "It'S", "we're", "WE'RE", "We'Re", "I've", "I'VE",
    "I'm", "I'M", "you'll", "YOU'LL", "You'Ll", "he'd", "HE'D", "'s", "'S", "'re", "'t", "'ll", "'d", "'m",
    "'x", "rock'n'roll", "O'Neil's", "the dogs' bones", "''s", " 's", "'s's", "it’s (curly)",
    "I'M YOU'RE WE'LL THEY'D IT'S DON'T I'VE", "don't stop 'til it's done",
    # punctuation runs and newlines after them
    "Hello, world!", "Hello world!!!", "!!!???...", "...\n", "?!\n\n", "(a)[b]{c}", "a.b.c", "--flag=value",
    "path/to/file.txt", "https://example.com/p?q=1&r=2#frag", "email@example.org", "#hashtag @user",
    "C++ & Rust -> ok", "x<y>z", "<html><body>", "**bold** _it_", "`code` ~~x~~", "a\\nb",
    # letters from many scripts, combining marks (NFC)
    "café", "cafe\u0301", "CAFE\u0301", "naïve résumé", "nai\u0308ve", "São Paulo", "Zürich", "Zu\u0308rich",
    "\u212b \u2126 \u212a", "a\u0328\u0301", "a\u0301\u0328", "e\u0323\u0302", "e\u0302\u0323", "\u1ec7",
    "\u0344", "\u0958", "\u0915\u093c", "\u1100\u1161\u11a8", "\ud55c\uad6d\uc5b4", "\u1112\u1161\u11ab",
    "\uf900\uf901", "\U0002f800", "ǅ ﬁ ①", "ﬀ ﬃ", "Ω", "Ⅻ", "x\u0301", "\u0301 leading mark", "q\u0307\u0323",
    "Ἄνδρα μοι ἔννεπε", "Α\u0313\u0301νδρα", "Все счастливые семьи", "Й и\u0306",
    # marks that Unicode 10.0 and later gave a combining class: `tokenizers`' NFC has Unicode 9.0
    # data, where they are starters (no reordering, and they block composition)
    "a\u07fd\u0301", "a\u0316\u0898\u0301", "\u0898\u0300\u0316", "e\u1dfa\u0301", "o\u1ac1\u0323\u0302",
    "\u0c15\u0c3c\u0301", "\U00011d42\u0300\u0316", "a\u1df6\u0301",
    # letters and digits that Unicode 15.0 and 16.0 added: CJK Extension H and I, Kawi, Nag
    # Mundari, Cyrillic TJE, Garay, outlined digits
    "\u4e2d\U00031350\u6587", "\U0002ebf0\u5b57", "\U00011f04\U00011f05 \U00011f50\U00011f51",
    "\U0001e4d0\U0001e4d1\U0001e4f0\U0001e4f1", "a\u1c89b \u1c8a", "\U00010d50\U00010d51 \U00010d40",
    "x\U0001ccf0y", "'s\U00031350",
    "עִבְרִית", "العربية", "مَرْحَبًا", "हिन्दी", "ज्ञान", "ไทย ภาษา", "ພາສາລາວ", "ქართული",
    "Ελληνικά", "Հայերեն", "አማርኛ", "ᚠᚢᚦ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝", "𓀀 hieroglyph",
    # CJK
    "中文字符", "中文分词测试，中文字符。", "学而时习之，不亦说乎？", "吾輩は猫である。", "日本語のテキスト",
    "カタカナ ﾊﾝｶｸ", "한국어 텍스트", "中文English混合123", "「引用」『二重』【括弧】",
    # emoji
    "😀", "😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵🇺🇸", "❤️", "❤\ufe0f", "☺", "🏳️‍🌈", "🧑🏿‍💻 coding",
    "I ❤️ NY", "🚀🚀🚀 launch", "emoji😀inside", "\U0001faf6\U0001fae8",
    # control characters and odd code points
    "\u0000 nul", "\u0007 bell \u001b[0m", "\ufeffBOM", "\U0010fffd", "\ue000 private", "\ufffd replacement",
    # special and added tokens
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>", "<|mask|><|mask|><|mask|>",
    "<|beginoftext|>Hello<|endoftext|>", "a<|endoftext|>b", "<|im_start|><|im_end|>", "<|im_start",
    "<|im_start|", "im_start|>", "<|IM_START|>", "<| im_start |>", "<<|im_end|>>", " <|im_end|> ",
    "<tool_call>{\"name\": \"f\"}</tool_call>", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>", "<|file_sep|>a.py\n<|repo_name|>r",
    CHATML,
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat's 12+30? Answer: 42.<|im_end|>\n"
    "<|im_start|>assistant\n42<|im_end|>\n<|endoftext|>",
    "<|im_start|>user\n\u4f60\u597d\uff01cafe\u0301 \U0001f600\n\n  indented\t<|im_end|>\n",
    CORPUS,
    (CORPUS + CHATML) * 10,
]


def random_strings(rng, n):
    """Short random strings from atoms that stress the pattern's boundaries."""
    atoms = ["a", "Z", "é", "e\u0301", "ß", "中", "の", "한", "ا", "ह", "ि", "\u0301", "0", "7", "١", "²",
             " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "'", "'s", "'T", "'LL", "'re", "’",
             ".", ",", "!", "?", "-", "_", "(", ")", "$", "#", "@", "/", "\\", "\"", "😀", "👍🏽", "‍",
             "\ufe0f", "🇯🇵", "<|im_end|>", "<|mask|>", "<tool_call>", "<|", "|>", "im", "start", "the",
             "The", " the", "ing", "tion", "Hello", "world", "12", "3.5", "\u0898", "\u1dfa", "\U00031350",
             "\U00011f50", "\u1c89"]
    return ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 24))) for _ in range(n)]


def build(out_dir, variant):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS] * 3, trainer)

    # Lay the file out as Qwen2's tokenizer.json is, field by field.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    merges = spec["model"]["merges"]
    if variant == "post_null":
        merges = [" ".join(m) if isinstance(m, list) else m for m in merges]
    spec["model"] = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                     "ignore_merges": False, "vocab": vocab, "merges": merges}
    spec["normalizer"] = {"type": "NFC"}
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    spec["post_processor"] = (None if variant == "post_null" else
                              {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                               "use_regex": False})
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    first = max(vocab.values()) + 1
    spec["added_tokens"] = [{"id": first + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": s} for i, (c, s) in enumerate(ADDED)]

    path = os.path.join(out_dir, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=2)
    # Dream's tokenizer_config.json names its BOS / EOS / mask tokens.
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "mask_token": "<|mask|>", "tokenizer_class": "DreamTokenizer"}, f)
    return path


def main():
    out_dir, variant = sys.argv[1], sys.argv[2]
    assert variant in ("post_bytelevel", "post_null"), variant
    with open(os.path.join(out_dir, "inputs.json"), encoding="utf-8") as f:
        extra = json.load(f)["texts"]
    path = build(out_dir, variant)
    tok = Tokenizer.from_file(path)  # the oracle reads exactly the file mosaic reads

    spec = json.load(open(path, encoding="utf-8"))
    all_ids, vocab_size = vocabulary(spec)
    rng = random.Random(20240501)
    random_decodes = decode_cases(tok, vocab_size, rng, [1, 2, 3, 4, 7, 16, 64], 30)

    oracle = {
        "variant": variant,
        "vocab_size": vocab_size,
        "chatml": CHATML,
        "cases": [encode_case(tok, s) for s in TEST_STRINGS],
        "random_cases": [encode_case(tok, s) for s in random_strings(rng, 400)],
        "extra_cases": [encode_case(tok, s) for s in extra],
        "random_decodes": random_decodes,
        "tokens": [[i, tok.id_to_token(i)] for i in sorted(all_ids)],
        "special_ids": sorted(t["id"] for t in spec["added_tokens"] if t["special"]),
        "bos_id": tok.token_to_id("<|beginoftext|>"),
        "eos_id": tok.token_to_id("<|endoftext|>"),
    }
    with open(os.path.join(out_dir, "oracle.json"), "w", encoding="utf-8") as f:
        json.dump(oracle, f)  # ASCII-escaped: no encoding questions on the C++ side
    print(f"{variant}: {len(oracle['cases'])} + {len(oracle['random_cases'])} + {len(extra)} cases, "
          f"vocab {vocab_size}")


if __name__ == "__main__":
    main()
