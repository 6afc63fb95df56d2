#pragma once
// What `mosaic chat` draws of an answer while it denoises: the committed text, a placeholder
// for every position still masked, the tokens this step committed highlighted; and how many
// terminal lines that takes, so that the next step can move up and redraw in place.
#include <cstdint>
#include <string>
#include <vector>

#include "io/tokenizer.h"

namespace mosaic::cli {

struct AnswerState {
  const std::vector<int32_t>* generated = nullptr;  // the generated region's tokens
  int32_t mask_id = 0;
  std::vector<bool> fresh;          // per position: committed by the last step
  std::vector<int32_t> end_ids;     // tokens that end the answer (not shown, nor what follows)
};

// styled: ANSI dim placeholders and highlighted fresh tokens; else plain text with '_' for
// each masked position.
std::string render_answer(const io::Tokenizer& tok, const AnswerState& a, bool styled);

// Lines `text` takes on a terminal `width` columns wide: escape sequences take no columns, a
// code point its terminal width (2 for CJK and emoji, 0 for combining marks), a wide character
// that does not fit a line's end starts the next, a newline ends a line.
int terminal_lines(const std::string& text, int width);

}  // namespace mosaic::cli
