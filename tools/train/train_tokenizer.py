#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of mosaic-tiny (HF `tokenizers`, deterministic).

    python3 tools/train/train_tokenizer.py            # data/corpus.txt -> data/tokenizer/

Layout (the same kind of tokenizer.json as tests/fixtures/llada_tiny and Llama-3/LLaDA):
  - pre-tokenizer: Llama-3 / GPT-4 split regex (isolated), then ByteLevel (no prefix
    space, no regex of its own); decoder ByteLevel; no normalizer; no post-processor
    (the BOS is added by the caller: `add_bos_token` in tokenizer_config.json, mosaic's
    `encode_plain`, LLaDA's chat template);
  - BPE: 256 byte symbols + merges = vocab_size - 6 tokens (ids 0 .. vocab_size-7);
  - then the special tokens, in this order, with the last ids:
      <|startoftext|> (bos)  <|endoftext|> (eos, pad)  <|eot_id|>
      <|start_header_id|>  <|end_header_id|>  <|mdm_mask|> (mask, = vocab_size - 1)
tokenizer_config.json: bos/eos/pad, add_bos_token true, LLaDA-8B-Instruct's chat template.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|mdm_mask|>"]
BOS, EOS, MASK = "<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>"
# Llama-3 / GPT-4 style pre-tokenisation split (as tests/fixtures/llada_tiny).
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# LLaDA-8B-Instruct's chat template (the Llama-3 format with LLaDA's bos token).
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def build(texts, vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    n_bpe = vocab_size - len(SPECIAL_TOKENS)
    trainer = trainers.BpeTrainer(vocab_size=n_bpe, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() != n_bpe:
        raise SystemExit(f"BPE training gave {tok.get_vocab_size()} tokens, wanted {n_bpe} "
                         "(corpus too small for this vocab size?)")
    tok.add_special_tokens(SPECIAL_TOKENS)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    assert ids[MASK] == vocab_size - 1 and tok.get_vocab_size() == vocab_size, ids
    return tok, ids


def write(tok, ids, out_dir: str, max_len: int):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True} for t in SPECIAL_TOKENS},
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "mask_token": MASK,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus.txt"))
    ap.add_argument("--out", default=os.path.join(HERE, "data", "tokenizer"))
    ap.add_argument("--vocab-size", type=int, default=4096, help="total, special tokens included")
    ap.add_argument("--max-len", type=int, default=4096, help="model_max_length in tokenizer_config.json")
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    with open(a.corpus, encoding="utf-8") as f:
        text = f.read()
    # One training text per chapter (paragraph), keeping its newlines.
    chunks = [c + "\n" for c in text.split("\n\n") if c.strip()]
    tok, ids = build(chunks, a.vocab_size)
    write(tok, ids, a.out, a.max_len)
    n = sum(len(e.ids) for e in tok.encode_batch(chunks, add_special_tokens=False))
    with open(os.path.join(a.out, "tokenizer.json"), "rb") as f:
        h = hashlib.sha256(f.read()).hexdigest()
    print(f"{a.out}: vocab {tok.get_vocab_size()}, special ids {ids}; corpus -> {n} tokens "
          f"({len(text.encode()) / n:.2f} bytes/token); tokenizer.json sha256 {h}")
    sample = "In the beginning God created the heaven and the earth.\nPsalms 23\n"
    enc = tok.encode(sample, add_special_tokens=False)
    if tok.decode(enc.ids, skip_special_tokens=False) != sample:
        sys.exit("round trip failed")


if __name__ == "__main__":
    main()
