#include "decode/llada_sampler.h"

#include <chrono>

#include "core/error.h"
#include "decode/schedule.h"

namespace mosaic {

Remasking parse_remasking(const std::string& s) {
  if (s == "low_confidence") return Remasking::LowConfidence;
  if (s == "random") return Remasking::Random;
  MOSAIC_FAIL("--remasking '{}' is not known: use low_confidence or random", s);
}

void validate_generate_options(const GenerateOptions& o) {
  MOSAIC_CHECK(o.gen_length > 0, "--gen-length must be positive (got {})", o.gen_length);
  MOSAIC_CHECK(o.block_length > 0, "--block-length must be positive (got {})", o.block_length);
  MOSAIC_CHECK(o.gen_length % o.block_length == 0,
               "--gen-length {} is not a multiple of --block-length {}: the sampler fills whole blocks",
               o.gen_length, o.block_length);
  const int64_t blocks = o.gen_length / o.block_length;
  MOSAIC_CHECK(o.steps > 0 && o.steps % blocks == 0,
               "--steps {} must be a positive multiple of the number of blocks ({} = --gen-length {} / "
               "--block-length {}), since each block gets steps/blocks steps",
               o.steps, blocks, o.gen_length, o.block_length);
  MOSAIC_CHECK(o.temperature >= 0.0, "--temperature must be >= 0 (got {})", o.temperature);
  MOSAIC_CHECK(o.cfg_scale >= 0.0f, "--cfg-scale must be >= 0 (got {})", o.cfg_scale);
}

GenerateResult llada_generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                              const StepCallback& on_step) {
  validate_generate_options(o);
  const auto& cfg = model.config();
  const int32_t mask = static_cast<int32_t>(cfg.mask_token_id);
  const int64_t P = static_cast<int64_t>(prompt.size());
  const int64_t L = P + o.gen_length;
  MOSAIC_CHECK(L <= (int64_t{1} << 31) - 1, "prompt + --gen-length = {} tokens is past the 2^31 position limit", L);

  GenerateResult res;
  res.prompt_length = P;
  std::vector<int32_t>& x = res.tokens;
  x.assign(static_cast<size_t>(L), mask);
  std::copy(prompt.begin(), prompt.end(), x.begin());
  std::vector<bool> is_prompt(static_cast<size_t>(L), false);
  for (int64_t i = 0; i < P; ++i) is_prompt[i] = x[i] != mask;

  const int64_t blocks = o.gen_length / o.block_length;
  const int64_t steps_per_block = o.steps / blocks;
  const bool guided = o.cfg_scale > 0.0f;
  std::vector<int32_t> uncond, pos;
  auto t_start = std::chrono::steady_clock::now();

  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t block_begin = P + b * o.block_length, block_end = block_begin + o.block_length;
    int64_t block_masked = 0;
    for (int64_t i = block_begin; i < block_end; ++i) block_masked += x[i] == mask;
    const std::vector<int64_t> schedule = transfer_schedule(block_masked, steps_per_block);

    for (int64_t s = 0; s < steps_per_block; ++s) {
      StepEvent ev{b, blocks, s, steps_per_block, b * steps_per_block + s, schedule[s], {}};
      if (schedule[s] > 0) {
        // Mask-only: only masked positions before the block's end can be committed, so only
        // those rows reach the LM head.
        pos.clear();
        for (int64_t i = 0; i < block_end; ++i)
          if (x[i] == mask) pos.push_back(static_cast<int32_t>(i));
        if (guided) {
          uncond = x;
          for (int64_t i = 0; i < L; ++i)
            if (is_prompt[i]) uncond[i] = mask;
        }
        SampleParams sp{o.temperature, o.remasking, o.seed, static_cast<uint64_t>(ev.global_step), o.cfg_scale};
        StepOutputs out = model.step(x, guided ? &uncond : nullptr, pos, sp, false, &ev.stats);
        // out.order ranks the rows by confidence (ties: lower position), as top_k_indices would.
        for (int64_t i = 0; i < schedule[s] && i < static_cast<int64_t>(out.order.size()); ++i)
          x[pos[out.order[i]]] = out.token[out.order[i]];
      }
      res.steps.push_back(ev);
      if (on_step) on_step(ev, x);
    }
  }
  res.total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  return res;
}

}  // namespace mosaic
