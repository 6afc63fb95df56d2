#!/usr/bin/env python3
"""Oracle for tests/io/test_tokenizer.cpp: pip's `tokenizers` (Hugging Face).

    tokenizer_oracle.py OUT_DIR STYLE

Builds a small byte-level BPE tokenizer of the given STYLE (trained with `tokenizers` on a
built-in paragraph), saves it as OUT_DIR/tokenizer.json (plus tokenizer_config.json for
some styles), reloads it from that file, and writes OUT_DIR/oracle.json with what
`tokenizers` gives for a list of test strings: ids of encode(s, add_special_tokens=False),
the same with encode_special_tokens=True, and the decodes with and without special tokens;
also decodes of random id sequences, every token's text, the special ids, vocab size and
the expected BOS/EOS ids. The C++ test requires mosaic to agree on all of it.
"""
import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|mdm_mask|>"]

CORPUS = """The quick brown fox jumps over the lazy dog. It's 2024, and we've got 12,345 reasons (maybe more!)
to write tokenizers; don't you think? THE END... or is it? She said: "I'll be there at 10:30 a.m."

Café au lait, naïve résumé, Zürich and São Paulo. 中文分词测试，中文字符。日本語のテキストも。
Emoji: 😀 😂 👍🏽 🚀 — and math: 3.14159 * 2 = 6.28318; x^2 + y^2 = z^2.
    Indented code:
\tdef f(x):\n\t\treturn x + 1  # comment
Numbers 1 22 333 4444 55555 666666 7777777; prices $100.00, €42, ¥1000.
URLs like https://example.com/path?q=1&r=2 and emails like someone@example.org.
"""

LLADA_CHAT = ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWhat is 12+30?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n")

TEST_STRINGS = [
    "", " ", "  ", "\t", "\n", "\n\n\n", " \t \n  x", "\r\n", "hello", " hello", "Hello world!", "HELLO WORLD",
    "I'M YOU'RE WE'LL THEY'D IT'S DON'T I'VE", "don't stop 'til it's done", "'s 'S 'Re",
    "12345", "1 22 333 4444 55555 666666", "3.14159 and 2,718", "x1y22z333",
    "café", "cafe\u0301", "naïve résumé", "中文字符", "日本語のテキスト", "😀", "👍🏽 family: 👨\u200d👩\u200d👧",
    "\u212b \u2126 \u1100\u1161\u11a8 a\u0328\u0301 \u0344 \uf900", "Ω", "ǅ ﬁ ①",
    "a\x85b", "x \x85y \x85\x85 z\x85", "a\u180eb \u180e c\u180e", "x\u00a0y\u3000z \u2028 end", "tab\tsep\tvalues\n", "line1\r\nline2\rline3\n\n  \n",
    "<|startoftext|>Hello<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|start is not <|startoftext|>", "<|mdm_mask|><|mdm_mask|><|mdm_mask|>", "a<|endoftext|>b", "<|endoftext",
    "x   <mask_l>  y", "x <mask_r>   y", "<mask_l><mask_r>", "hello_world", "say hello_world now", "ahello_world",
    "hello_worlds", "(hello_world)", "x\u0301hello_world", "hello_world\u0301", "\u00b2hello_world",
    "\u200dhello_world", "hello_world\u200c", "\u24b6hello_world", "\U00031350hello_world", "hello_world\U0001e4d0",
    "cafe\u0301 café", "    leading spaces", "trailing spaces    ",
    "multiple     inner     spaces", "!!!???...", "$100.00 (approx.)", "email@example.com https://example.com/p?q=1",
    "zyxwv qwerty", " zyxwv", "qwerty", "\u0000 control \u0007 chars \u001b[0m", "\ufeffBOM", "\U0010fffd",
    LLADA_CHAT,
    CORPUS,
    (CORPUS + LLADA_CHAT) * 40,
]


def byte_level(add_prefix_space=False, use_regex=True):
    return pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=use_regex)


# style -> (normalizer, pre_tokenizer, ignore_merges)
STYLES = {
    "gpt2": (None, byte_level(), False),
    "gpt2_prefix": (None, byte_level(add_prefix_space=True), False),
    "llama3": (None, pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
                                              byte_level(use_regex=False)]), True),
    "qwen2": (normalizers.NFC(), pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), "isolated"),
                                                          byte_level(use_regex=False)]), False),
    "split_removed": (None, pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\s+"), "removed"),
                                                     pre_tokenizers.Digits(individual_digits=True),
                                                     byte_level()]), False),
    "split_merged_prev": (None, pre_tokenizers.Sequence([pre_tokenizers.Split(".", "merged_with_previous"),
                                                         byte_level()]), False),
    "split_merged_next": (None, pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"[,;:!?]"), "merged_with_next"),
                                                         byte_level()]), False),
    "split_contiguous": (None, pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{P}"), "contiguous"),
                                                        pre_tokenizers.Digits(individual_digits=False),
                                                        byte_level()]), False),
    "split_invert": (None, pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}+"), "removed",
                                                                         invert=True),
                                                    byte_level(add_prefix_space=True)]), False),
}


def build(style, out_dir):
    normalizer, pre_tokenizer, ignore_merges = STYLES[style]
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS] * 3, trainer)

    spec = json.loads(tok.to_str())
    if style == "llama3":
        # Whole words in the vocab that the merges cannot build: ignore_merges picks them.
        vocab = spec["model"]["vocab"]
        for word in ["Ġzyxwv", "qwerty"]:
            vocab[word] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens([AddedToken("<|start", special=True), AddedToken("<mask_l>", lstrip=True, special=True)])
    tok.add_tokens([AddedToken("<mask_r>", rstrip=True, normalized=False),
                    AddedToken("hello_world", single_word=True),
                    AddedToken("café", normalized=True)])

    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    if style == "gpt2_prefix":
        # Older files write merges as "left right" strings.
        spec = json.load(open(path, encoding="utf-8"))
        spec["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
        json.dump(spec, open(path, "w", encoding="utf-8"), ensure_ascii=False)

    bos, eos = "<|startoftext|>", "<|endoftext|>"  # found by name when there is no config
    if style == "llama3":
        config = {"bos_token": "<|startoftext|>",
                  "eos_token": {"content": "<|eot_id|>", "lstrip": False, "normalized": False, "rstrip": False,
                                "single_word": False, "__type": "AddedToken"}}
        json.dump(config, open(os.path.join(out_dir, "tokenizer_config.json"), "w"))
        eos = "<|eot_id|>"
    if style == "qwen2":
        json.dump({"bos_token": None, "eos_token": "<|endoftext|>"},
                  open(os.path.join(out_dir, "tokenizer_config.json"), "w"))
        bos = None
    return path, bos, eos


def encode_case(tok, text):
    """What pip's tokenizer makes of one text: ids with and without special-token parsing, decodes."""
    tok.encode_special_tokens = False
    ids = tok.encode(text, add_special_tokens=False).ids
    tok.encode_special_tokens = True
    ids_plain = tok.encode(text, add_special_tokens=False).ids
    tok.encode_special_tokens = False
    return {"text": text, "ids": ids, "ids_plain": ids_plain,
            "decode": tok.decode(ids, skip_special_tokens=False),
            "decode_skip": tok.decode(ids, skip_special_tokens=True)}


def vocabulary(spec):
    """Every id of a tokenizer.json (model vocab and added tokens), and the vocab size they span."""
    all_ids = set(spec["model"]["vocab"].values()) | {t["id"] for t in spec["added_tokens"]}
    return all_ids, max(all_ids) + 1


def decode_cases(tok, vocab_size, rng, lengths, per_length):
    """Random id sequences and pip's decodes of them, per_length of each length."""
    cases = []
    for n in lengths:
        for _ in range(per_length):
            ids = [rng.randrange(vocab_size) for _ in range(n)]
            cases.append({"ids": ids, "decode": tok.decode(ids, skip_special_tokens=False),
                          "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    return cases


def main():
    out_dir, style = sys.argv[1], sys.argv[2]
    path, bos, eos = build(style, out_dir)
    tok = Tokenizer.from_file(path)  # the oracle reads exactly the file mosaic reads

    spec = json.load(open(path, encoding="utf-8"))
    all_ids, vocab_size = vocabulary(spec)
    random_decodes = decode_cases(tok, vocab_size, random.Random(1234), [1, 2, 3, 5, 8, 20, 50], 20)

    oracle = {
        "style": style,
        "vocab_size": vocab_size,
        "cases": [encode_case(tok, s) for s in TEST_STRINGS],
        "random_decodes": random_decodes,
        "tokens": [[i, tok.id_to_token(i)] for i in sorted(all_ids)],
        "special_ids": sorted(t["id"] for t in spec["added_tokens"] if t["special"]),
        "bos_id": tok.token_to_id(bos) if bos else None,
        "eos_id": tok.token_to_id(eos) if eos else None,
    }
    with open(os.path.join(out_dir, "oracle.json"), "w", encoding="utf-8") as f:
        json.dump(oracle, f)  # ASCII-escaped: no encoding questions on the C++ side
    print(f"{style}: {len(oracle['cases'])} cases, vocab {vocab_size}")


if __name__ == "__main__":
    main()
