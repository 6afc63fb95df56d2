#pragma once
// Chat templates of the supported model families, written out in C++ (no Jinja engine):
// the output matches the model's own tokenizer_config.json `chat_template`.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mosaic::io {

// messages: (role, content) pairs, e.g. {"system", ...}, {"user", ...}, {"assistant", ...}.
//
// "llada" (GSAI-ML/LLaDA-8B-Instruct):
//   <|startoftext|> before the first message, then for each message
//   <|start_header_id|>{role}<|end_header_id|>\n\n{content, whitespace-trimmed}<|eot_id|>
//   and, when add_generation_prompt, <|start_header_id|>assistant<|end_header_id|>\n\n.
//   (The model's own template appends that last header unconditionally; here it follows
//   the flag. The CLI passes true, which gives the model's exact text.)
// "dream" (Dream-org/Dream-v0-Instruct-7B, Qwen2 chat format):
//   <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n unless the first message is
//   a system message, then <|im_start|>{role}\n{content}<|im_end|>\n per message, and
//   <|im_start|>assistant\n when add_generation_prompt.
// "llada2" (inclusionAI LLaDA2.0, Ling-2.0 format as dInfer's prompts write it; the model's own
//   template was not available): <role>{SYSTEM|HUMAN|ASSISTANT}</role>{content}<|role_end|> per
//   message, and <role>ASSISTANT</role> when add_generation_prompt.
// The result is meant for Tokenizer::encode(text, /*parse_special=*/true).
// Throws mosaic::Error for an unknown family.
std::string apply_chat_template(std::string_view family,
                                const std::vector<std::pair<std::string, std::string>>& messages,
                                bool add_generation_prompt);

}  // namespace mosaic::io
