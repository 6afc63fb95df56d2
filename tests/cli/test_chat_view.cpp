// The chat view's line count, which the redraw moves the cursor up by: escape sequences take
// no columns, CJK and emoji two, combining marks none; a wide character that does not fit the
// end of a line starts the next.
#include <gtest/gtest.h>

#include "cli/chat_view.h"

namespace mosaic::cli {
namespace {

TEST(ChatView, TerminalLinesCountColumnsAsATerminalDoes) {
  EXPECT_EQ(terminal_lines("", 10), 1);
  EXPECT_EQ(terminal_lines("abcd", 4), 1);
  EXPECT_EQ(terminal_lines("abcde", 4), 2);
  EXPECT_EQ(terminal_lines("ab\ncd\n", 10), 3);
  EXPECT_EQ(terminal_lines("\x1b[1;36mabcd\x1b[0m", 4), 1) << "escape sequences take no columns";
  EXPECT_EQ(terminal_lines("\u2591\u2591\u2591\u2591", 4), 1) << "the placeholder is one column";
  EXPECT_EQ(terminal_lines("\u4f60\u597d", 4), 1) << "two CJK characters fill 4 columns";
  EXPECT_EQ(terminal_lines("\u4f60\u597d\u4e16", 4), 2);
  EXPECT_EQ(terminal_lines("a\u4f60\u597d", 4), 2) << "the second wide character does not fit: it moves down";
  EXPECT_EQ(terminal_lines("\U0001F600\U0001F600\U0001F600", 4), 2) << "emoji are two columns";
  EXPECT_EQ(terminal_lines("e\u0301e\u0301e\u0301e\u0301", 4), 1) << "combining marks take none";
  EXPECT_EQ(terminal_lines("ab\xff\xfe", 4), 1) << "bytes that are not UTF-8: one column each";
}

}  // namespace
}  // namespace mosaic::cli
