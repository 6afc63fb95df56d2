"""Regenerate everything under tests/fixtures/ (deterministic; CPU; well under a minute):

    PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_fixtures.py

tests/fixtures/llada_tiny/
    config.json                   LLaDA-8B's field set, tiny geometry: d_model 64, 2 layers, 4 heads,
                                  2 kv heads (GQA), mlp 160, vocab_size = tokenizer size (400),
                                  embedding_size padded to a multiple of 64 (448), rope_theta 1e4
    model.safetensors             bf16, official tensor names, seeded random weights
    tokenizer.json                byte-level BPE trained here on an embedded public-domain text,
                                  + added special tokens <|startoftext|> <|endoftext|> <|eot_id|>
                                  <|start_header_id|> <|end_header_id|> <|mdm_mask|> (the last ids)
    tokenizer_config.json         bos/eos/pad tokens and LLaDA-Instruct's (Llama-3 style) chat template
    reference_logits.safetensors  "tokens" int32 [20] (a few are <|mdm_mask|>), "logits" float32
                                  [20, embedding_size]: the reference forward in float64, cast
    goldens.json                  generate() cases run in float64 (see CASES)
tests/fixtures/llada_tiny_fused/  the same weights with att_proj = cat(q_proj, k_proj, v_proj) (dim 0)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_checkpoint  # noqa: E402
import noise  # noqa: E402
import st_io  # noqa: E402
from generate import generate  # noqa: E402
from llada import LLaDA  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
TINY = os.path.join(FIX, "llada_tiny")
FUSED = os.path.join(FIX, "llada_tiny_fused")
WEIGHT_SEED = 20240531
MIN_MARGIN = 1e-6

# Abraham Lincoln, the Gettysburg Address (1863; Bliss copy). Public domain.
CORPUS = """Four score and seven years ago our fathers brought forth on this continent, a new nation, \
conceived in Liberty, and dedicated to the proposition that all men are created equal.
Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and \
so dedicated, can long endure. We are met on a great battle-field of that war. We have come to dedicate \
a portion of that field, as a final resting place for those who here gave their lives that that nation \
might live. It is altogether fitting and proper that we should do this.
But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow -- this ground. \
The brave men, living and dead, who struggled here, have consecrated it, far above our poor power to add \
or detract. The world will little note, nor long remember what we say here, but it can never forget what \
they did here. It is for us the living, rather, to be dedicated here to the unfinished work which they who \
fought here have thus far so nobly advanced. It is rather for us to be here dedicated to the great task \
remaining before us -- that from these honored dead we take increased devotion to that cause for which \
they gave the last full measure of devotion -- that we here highly resolve that these dead shall not have \
died in vain -- that this nation, under God, shall have a new birth of freedom -- and that government of \
the people, by the people, for the people, shall not perish from the earth.
"""

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|mdm_mask|>"]
BPE_VOCAB = 400 - len(SPECIAL_TOKENS)
# Llama-3 / GPT-4 style pre-tokenisation split, then byte-level mapping.
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


def chat(user: str) -> str:
    return ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + user.strip() +
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    lines = [l for l in CORPUS.split("\n") if l]
    tok.train_from_iterator(lines * 4, trainer=trainer)
    if tok.get_vocab_size() != BPE_VOCAB:
        raise SystemExit(f"BPE training gave {tok.get_vocab_size()} tokens, wanted {BPE_VOCAB}")
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def write_tokenizer(tok, d: str) -> dict:
    tok.save(os.path.join(d, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True} for t in SPECIAL_TOKENS},
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return ids


def fresh(d: str):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)


CASES = [
    # name, prompt key, gen_length, steps, block_length, temperature, cfg_scale, remasking, seed
    ("greedy_one_block",          "plain", 16, 16, 16, 0.0, 0.0, "low_confidence", 0),
    ("greedy_two_blocks",         "plain", 32, 32, 16, 0.0, 0.0, "low_confidence", 0),
    ("greedy_four_blocks_3steps", "plain", 32, 12, 8, 0.0, 0.0, "low_confidence", 0),
    ("greedy_5_per_step",         "chat", 24, 5, 24, 0.0, 0.0, "low_confidence", 0),
    ("greedy_cfg",                "chat", 16, 8, 8, 0.0, 1.5, "low_confidence", 0),
    ("random_remask",             "plain", 16, 8, 16, 0.0, 0.0, "random", 11),
    ("gumbel_two_blocks",         "plain", 16, 16, 8, 0.7, 0.0, "low_confidence", 7),
    ("gumbel_random_cfg",         "chat", 32, 10, 16, 1.0, 0.5, "random", 3),
    ("gumbel_cfg_3steps",         "plain", 8, 3, 8, 0.5, 1.0, "low_confidence", 5),
    ("gumbel_idle_steps",         "plain", 8, 12, 4, 0.5, 0.0, "low_confidence", 9),
    ("greedy_mask_in_prompt",     "masked", 16, 8, 16, 0.0, 0.0, "low_confidence", 0),
    ("greedy_cfg_mask_in_prompt", "masked_cfg", 16, 16, 16, 0.0, 2.0, "low_confidence", 0),
]


def main():
    t0 = time.time()
    os.makedirs(FIX, exist_ok=True)
    noise.self_test(verbose=False)
    fresh(TINY)
    fresh(FUSED)

    # --- tokenizer + config + weights
    tok = build_tokenizer()
    ids = write_tokenizer(tok, TINY)
    vocab = tok.get_vocab_size()
    cfg = make_checkpoint.tiny_llada(vocab_size=vocab, mask_token_id=ids["<|mdm_mask|>"],
                                     eos_token_id=ids["<|endoftext|>"])
    assert cfg["embedding_size"] % 64 == 0 and cfg["embedding_size"] > cfg["vocab_size"]
    make_checkpoint.write(cfg, TINY, seed=WEIGHT_SEED, dtype="bf16", log=None)

    # --- fused copy: att_proj = cat(q, k, v) along the output dim, everything else identical
    from safetensors.torch import save_file

    w = st_io.load_tensors(TINY)
    fused = {}
    for n, t in w.items():
        if ".q_proj.weight" in n:
            p = n[: -len("q_proj.weight")]
            fused[p + "att_proj.weight"] = torch.cat([w[p + "q_proj.weight"], w[p + "k_proj.weight"],
                                                      w[p + "v_proj.weight"]], 0).contiguous()
        elif ".k_proj.weight" in n or ".v_proj.weight" in n:
            continue
        else:
            fused[n] = t
    save_file(fused, os.path.join(FUSED, "model.safetensors"), metadata={"format": "pt"})
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TINY, f), os.path.join(FUSED, f))

    # --- models (float64 over the stored bf16 weights)
    m64 = LLaDA.from_pretrained(TINY, "float64")
    mf64 = LLaDA.from_pretrained(FUSED, "float64")
    m32 = LLaDA.from_pretrained(TINY, "float32")
    assert mf64.fused and not m64.fused
    mask = cfg["mask_token_id"]

    # --- reference logits
    enc = tok.encode("It is for us the living, rather, to be dedicated here to the unfinished work",
                     add_special_tokens=False).ids
    tokens = ([ids["<|startoftext|>"]] + enc)[:20]
    assert len(tokens) == 20, len(tokens)
    for p in (5, 11, 17, 18, 19):
        tokens[p] = mask
    x = torch.tensor([tokens])
    logits = m64(x)[0]
    d_fused = float((mf64(x)[0] - logits).abs().max())
    assert d_fused < 1e-12, f"fused att_proj path differs: {d_fused}"
    d32 = float(((m32(x)[0].double() - logits).norm() / logits.norm()))
    save_file({"tokens": torch.tensor(tokens, dtype=torch.int32), "logits": logits.to(torch.float32).contiguous()},
              os.path.join(TINY, "reference_logits.safetensors"), metadata={"format": "pt"})

    # --- goldens
    prompts = {
        "plain": tok.encode("Four score and seven years ago our fathers", add_special_tokens=False).ids,
        "chat": tok.encode(chat("What is a nation?"), add_special_tokens=False).ids,
    }
    pm = tok.encode("We are met on a great battle-field of that war.", add_special_tokens=False).ids
    pm[3] = mask  # a [MASK] inside the prompt: official code treats it as a position to fill
    prompts["masked"] = pm
    # Two masks early in a short prompt, filled while guidance runs: un_x must keep them
    # (the official prompt_index is taken once, before the first step).
    pm2 = list(prompts["plain"])
    pm2[1] = pm2[3] = mask
    prompts["masked_cfg"] = pm2

    cases = []
    rows = []
    for name, pk, gen, steps, blk, temp, cfgs, rm, seed in CASES:
        stochastic = temp > 0 or rm == "random"
        for attempt in range(20 if stochastic else 1):
            s = seed + attempt
            r = generate(m64, prompts[pk], steps, gen, blk, temp, cfgs, rm, seed=s)
            if r.min_margin > MIN_MARGIN:
                break
        if not r.min_margin > MIN_MARGIN:
            raise SystemExit(f"case {name}: min_margin {r.min_margin:.3e} <= {MIN_MARGIN}: "
                             "on a knife edge; change its prompt")
        r32 = generate(m32, prompts[pk], steps, gen, blk, temp, cfgs, rm, seed=s)
        rf = generate(mf64, prompts[pk], steps, gen, blk, temp, cfgs, rm, seed=s)
        assert rf.tokens == r.tokens, f"case {name}: fused model generates differently"
        new = r.tokens[len(prompts[pk]):]
        # Each block commits as many tokens as it has masks; a mask filled inside the prompt
        # leaves as many masks in the generated region (the official code does the same).
        filled = sum(1 for a, b in zip(prompts[pk], r.tokens) if a == mask and b != mask)
        assert new.count(mask) == filled, f"case {name}: {new.count(mask)} masks left, {filled} expected"
        cases.append({
            "name": name, "prompt_tokens": prompts[pk], "gen_length": gen, "steps": steps,
            "block_length": blk, "temperature": temp, "cfg_scale": cfgs, "remasking": rm, "seed": s,
            "output_tokens": r.tokens, "min_margin": r.min_margin,
        })
        rows.append((name, gen, steps, blk, temp, cfgs, rm, s, r.min_margin, r32.tokens == r.tokens,
                     len(set(new))))
    golden = {
        "description": "LLaDA generate() goldens for tests/fixtures/llada_tiny, computed by "
                       "tools/reference/generate.py in float64 over the bf16 weights. Noise: "
                       "tools/reference/noise.py (counter-based); top-k ties -> lower position. "
                       "output_tokens is the full final sequence, prompt included. min_margin: "
                       "smallest decision gap over all steps (see generate.py).",
        "regenerate": "PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_fixtures.py",
        "mask_token_id": mask,
        "cases": cases,
    }
    with open(os.path.join(TINY, "goldens.json"), "w") as f:
        json.dump(golden, f, indent=1, allow_nan=False)
        f.write("\n")

    for d in (TINY, FUSED):   # safetensors writes 0600 files; fixtures are plain readable files
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)

    # --- report
    print(f"tokenizer: {vocab} tokens ({BPE_VOCAB} BPE + {len(SPECIAL_TOKENS)} special), ids {ids}")
    print(f"config: embedding_size {cfg['embedding_size']}, mask_token_id {mask}")
    print(f"reference logits: tokens {tokens}")
    print(f"  fp32 vs fp64 relative error {d32:.2e}; fused vs separate max |diff| {d_fused:.1e}")
    hdr = f"{'case':28s} {'gen':>4s} {'steps':>5s} {'blk':>4s} {'T':>4s} {'cfg':>4s} {'remask':15s} {'seed':>4s} " \
          f"{'min_margin':>10s} {'fp32 same':>9s} {'distinct':>8s}"
    print(hdr)
    print("-" * len(hdr))
    for n, g, st, b, t, c, rm, s, mm, same, dist in rows:
        print(f"{n:28s} {g:4d} {st:5d} {b:4d} {t:4.1f} {c:4.1f} {rm:15s} {s:4d} {mm:10.3e} {str(same):>9s} {dist:8d}")
    total = 0
    for d in (TINY, FUSED):
        for f in sorted(os.listdir(d)):
            total += os.path.getsize(os.path.join(d, f))
    print(f"fixtures: {total / 1024:.0f} KiB in {FIX} ({time.time() - t0:.1f} s)")
    if total >= 1 << 20:
        raise SystemExit("fixtures exceed 1 MiB")


if __name__ == "__main__":
    main()
