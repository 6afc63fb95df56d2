"""LLaDA's official `generate()` (ML-GSAI/LLaDA generate.py), reproduced step for step.

Per block b (block_length tokens after the prompt), per step i of steps/num_blocks:
    mask_index = (x == mask_id)
    logits = model(x)                              cfg_scale > 0: also model(un_x) with the prompt
                                                   positions set to mask_id, then
                                                   logits = un + (cfg_scale + 1) * (cond - un)
    x0 = argmax(add_gumbel_noise(logits, T))       T == 0: logits unchanged; else
                                                   exp(logits.float64) / (-log u)^T
    low_confidence: p = softmax(logits); x0_p = p[x0]      random: x0_p = u'
    x0_p[:, block_end:] = -inf;  x0 = where(mask_index, x0, x);  confidence = where(mask_index, x0_p, -inf)
    k = get_num_transfer_tokens(block's masks, steps)[i]: n // steps each, the first n % steps get +1
    x[top-k(confidence)] = x0[top-k]

Deviations from the official code (all on purpose, see README.md):
  * noise: u and u' come from noise.counter_uniform (streams GUMBEL / REMASK, step = the
    global step index, pos = absolute position, col = vocab id / 0) instead of
    torch.rand_like / torch.rand, so an engine can reproduce them without an L x V tensor.
    Only the rows that can be committed (masked positions before the block's end) need
    noise; the others never influence x (their x0 is replaced by x or their confidence
    is -inf), so they are not drawn.
  * top-k: torch.topk's order among equal confidences is unspecified; here selection is a
    stable descending sort: ties go to the lower position.
  * softmax dtype: the official code computed p = softmax(logits.to(float64)) until commit
    f51cb17 ("Remove float64 in softmax, which is unnecessary", 2025-06-02); since then it
    is softmax(logits) in the logits' dtype (bf16 for the released models). Selectable here
    with softmax_dtype ("model" = current official, "float64" = older official); in float64
    runs the two are the same.
  * batch size 1 only; no attention_mask / padding; logits_eos_inf and
    confidence_eos_eot_inf (off by default upstream) are not reproduced.

Decision margin: for each step, the smallest of
  (a) top1 - top2 of the noisy score (logits, or logits - T*log(-log u) which orders tokens as
      exp(logits)/(-log u)^T does) over the rows whose x0 matters: every candidate row under
      low_confidence (its x0 sets its confidence), the committed rows under random;
  (b) confidence[k-th] - confidence[(k+1)-th] among the candidates, when k > 0 and a (k+1)-th exists.
min_margin over all steps tells how far a case is from a knife edge.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noise  # noqa: E402


def get_num_transfer_tokens(mask_num: int, steps: int) -> List[int]:
    base, rem = divmod(int(mask_num), int(steps))
    return [base + (1 if i < rem else 0) for i in range(steps)]


def validate(steps: int, gen_length: int, block_length: int, temperature: float = 0.0,
             cfg_scale: float = 0.0, remasking: str = "low_confidence") -> int:
    if gen_length <= 0 or block_length <= 0 or steps <= 0:
        raise ValueError(f"gen_length ({gen_length}), block_length ({block_length}) and steps ({steps}) "
                         "must be positive")
    if gen_length % block_length != 0:
        raise ValueError(f"gen_length ({gen_length}) must be a multiple of block_length ({block_length}) "
                         "(official: assert gen_length % block_length == 0)")
    num_blocks = gen_length // block_length
    if steps % num_blocks != 0:
        raise ValueError(f"steps ({steps}) must be a multiple of the number of blocks ({num_blocks} = "
                         f"gen_length {gen_length} / block_length {block_length}) "
                         "(official: assert steps % num_blocks == 0)")
    if temperature < 0:
        raise ValueError(f"temperature ({temperature}) must be >= 0")
    if cfg_scale < 0:
        raise ValueError(f"cfg_scale ({cfg_scale}) must be >= 0")
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking '{remasking}' is not known: use low_confidence or random")
    return num_blocks


@dataclass
class StepInfo:
    block: int
    step: int              # within the block
    global_step: int
    k: int                 # tokens committed
    positions: List[int]   # committed positions, in selection order
    margin: float


@dataclass
class GenerateResult:
    tokens: List[int]                      # the full final x, prompt included
    min_margin: float
    steps: List[StepInfo] = field(default_factory=list)


def _top2_gap(scores: torch.Tensor) -> torch.Tensor:
    """Per row top1 - top2 (float64)."""
    if scores.shape[-1] < 2:
        return torch.full(scores.shape[:-1], math.inf, dtype=torch.float64)
    t = torch.topk(scores.to(torch.float64), 2, dim=-1).values
    return t[..., 0] - t[..., 1]


def score_candidates(cl: torch.Tensor, positions: List[int], temperature: float, remasking: str,
                     seed: int, gstep: int, softmax_dtype: str = "model"):
    """The candidates' logits cl [C, V] (model dtype) at absolute positions -> x0 [C], confidence
    [C] (float64) and the noisy score [C, V] (float64) whose top1 - top2 is margin (a)."""
    V = cl.shape[-1]
    if temperature == 0:
        x0c = torch.argmax(cl, dim=-1)
        noisy_log = cl.to(torch.float64)
    else:
        u = noise.uniform_rows(seed, noise.GUMBEL, gstep, positions, V, device=cl.device)
        lg = cl.to(torch.float64)
        gumbel_noise = (-torch.log(u)) ** temperature
        x0c = torch.argmax(lg.exp() / gumbel_noise, dim=-1)   # the official formula
        noisy_log = lg - temperature * torch.log(-torch.log(u))
        del u, gumbel_noise
    if remasking == "low_confidence":
        src = cl.to(torch.float64) if softmax_dtype == "float64" else cl
        pr = torch.softmax(src, dim=-1)
        conf_c = torch.gather(pr, -1, x0c[:, None])[:, 0].to(torch.float64)
        del pr
    else:
        conf_c = noise.uniform_rows(seed, noise.REMASK, gstep, positions, 1,
                                    device=cl.device)[:, 0].to(torch.float64)
    return x0c, conf_c, noisy_log


@torch.no_grad()
def generate(model, prompt, steps: int = 128, gen_length: int = 128, block_length: int = 128,
             temperature: float = 0.0, cfg_scale: float = 0.0, remasking: str = "low_confidence",
             mask_id: Optional[int] = None, seed: int = 0, softmax_dtype: str = "model",
             on_step=None) -> GenerateResult:
    """model: callable ids [B, L] -> logits [B, L, V] (e.g. llada.LLaDA). prompt: list or [1, P] tensor."""
    num_blocks = validate(steps, gen_length, block_length, temperature, cfg_scale, remasking)
    if mask_id is None:
        mask_id = model.mask_token_id
    device = getattr(model, "device", torch.device("cpu"))
    p = torch.as_tensor(prompt, dtype=torch.long).reshape(1, -1)
    P = p.shape[1]
    x = torch.full((1, P + gen_length), mask_id, dtype=torch.long, device=device)
    x[:, :P] = p.to(device)
    prompt_index = x != mask_id
    steps_per_block = steps // num_blocks
    result = GenerateResult(tokens=[], min_margin=math.inf)

    for b in range(num_blocks):
        b0 = P + b * block_length
        b1 = b0 + block_length
        schedule = get_num_transfer_tokens(int((x[0, b0:b1] == mask_id).sum()), steps_per_block)
        for i in range(steps_per_block):
            gstep = b * steps_per_block + i
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                both = model(torch.cat([x, un_x], dim=0))
                logits, un_logits = both[:1], both[1:]
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
                del both, un_logits
            else:
                logits = model(x)
            # Rows that can be committed: masked and before the block's end.
            cand = torch.nonzero(mask_index[0, :b1], as_tuple=False).flatten()
            cl = logits[0, cand]                                   # [C, V], model dtype
            x0c, conf_c, noisy_log = score_candidates(cl, cand.tolist(), temperature, remasking, seed,
                                                      gstep, softmax_dtype)
            k = schedule[i]
            # Stable descending sort: ties -> lower position first (cand is ascending).
            order = np.argsort(-conf_c.cpu().numpy(), kind="stable")
            sel = order[:k]
            if k > len(order):
                raise RuntimeError(f"step {gstep}: {k} tokens to commit but only {len(order)} candidates")
            # margins
            gaps = _top2_gap(noisy_log)
            rows = np.arange(len(order)) if remasking == "low_confidence" else sel
            m = float(gaps[torch.as_tensor(rows, dtype=torch.long)].min()) if len(rows) else math.inf
            cs = conf_c.cpu().numpy()[order]
            if 0 < k < len(order):
                m = min(m, float(cs[k - 1] - cs[k]))
            if k == 0:
                m = math.inf
            pos_sel = cand[torch.as_tensor(sel, dtype=torch.long)]
            x[0, pos_sel] = x0c[torch.as_tensor(sel, dtype=torch.long)].to(x.dtype)
            info = StepInfo(b, i, gstep, k, pos_sel.tolist(), m)
            result.steps.append(info)
            result.min_margin = min(result.min_margin, m)
            if on_step:
                on_step(info, x)
            del logits, cl, noisy_log
    result.tokens = x[0].tolist()
    return result


def main():
    ap = argparse.ArgumentParser(description="Run the reference LLaDA sampler on a checkpoint directory")
    ap.add_argument("model_dir")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt-tokens", help="comma-separated token ids")
    g.add_argument("--prompt", help="text, encoded with the directory's tokenizer.json")
    ap.add_argument("--chat", action="store_true", help="wrap --prompt in the LLaDA chat format")
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--block-length", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--cfg-scale", type=float, default=0.0)
    ap.add_argument("--remasking", default="low_confidence")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--softmax-dtype", default="model", choices=["model", "float64"])
    a = ap.parse_args()
    from llada import LLaDA

    m = LLaDA.from_pretrained(a.model_dir, a.dtype, a.device)
    tok = None
    tok_path = os.path.join(a.model_dir, "tokenizer.json")
    if os.path.isfile(tok_path):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tok_path)
    if a.prompt_tokens:
        prompt = [int(t) for t in a.prompt_tokens.split(",") if t.strip()]
    else:
        if tok is None:
            sys.exit(f"{a.model_dir} has no tokenizer.json; use --prompt-tokens")
        text = a.prompt
        if a.chat:
            text = ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + text.strip() +
                    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        prompt = tok.encode(text, add_special_tokens=False).ids
    r = generate(m, prompt, a.steps, a.gen_length, a.block_length, a.temperature, a.cfg_scale,
                 a.remasking, seed=a.seed, softmax_dtype=a.softmax_dtype)
    print("tokens:", r.tokens)
    print("min_margin: %.3e" % r.min_margin)
    if tok is not None:
        print("text:", repr(tok.decode(r.tokens[len(prompt):], skip_special_tokens=False)))


if __name__ == "__main__":
    main()
