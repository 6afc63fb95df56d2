#pragma once
// What `mosaic chat` draws of an answer while it denoises: the committed text, a placeholder
// for every position still masked, the tokens this step committed highlighted; and how many
// terminal lines that takes, so that the next step can move up and redraw in place.
#include <cstddef>
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
// The byte offsets at which those lines start (the first is 0).
std::vector<size_t> line_starts(const std::string& text, int width);
// An answer taller than the screen cannot be redrawn in place (the cursor does not move above
// the screen's top): while it denoises, the view shows max_lines of its lines, those around the
// byte `focus` (the step's fresh tokens: fresh_at), led by the style in force where it was cut
// and reset at its end. All of `text` when it fits.
std::string visible_lines(const std::string& text, int width, int max_lines, size_t focus);
// Where render_answer's styled text shows its last run of fresh tokens (npos when none).
size_t fresh_at(const std::string& styled);

}  // namespace mosaic::cli
