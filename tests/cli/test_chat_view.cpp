// The chat view's line count, which the redraw moves the cursor up by: escape sequences take
// no columns, CJK and emoji two, combining marks none; a wide character that does not fit the
// end of a line starts the next. And the tail of an answer taller than the screen.
#include <gtest/gtest.h>

#include <string>
#include <vector>

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

TEST(ChatView, LineStartsAreWhereTheTerminalWraps) {
  EXPECT_EQ(line_starts("abcdefghij", 4), (std::vector<size_t>{0, 4, 8}));
  EXPECT_EQ(line_starts("ab\ncd", 10), (std::vector<size_t>{0, 3}));
  // "a" then two CJK characters (3 bytes each): the second does not fit the first line.
  EXPECT_EQ(line_starts("a\u4f60\u597d", 4), (std::vector<size_t>{0, 4}));
}

// An answer taller than the screen shows the lines around the focus, in the style in force there.
TEST(ChatView, VisibleLinesFollowTheFocusAndKeepItsStyle) {
  const std::string t = "abcdefghijklmnop";  // four lines of four at width 4
  EXPECT_EQ(visible_lines(t, 4, 4, 0), t) << "it fits: all of it";
  EXPECT_EQ(visible_lines(t, 4, 2, 0), "abcdefgh\x1b[0m") << "focus on the first line: the top";
  EXPECT_EQ(visible_lines(t, 4, 2, 9), "efghijkl\x1b[0m") << "focus on line 2: it and the line above";
  EXPECT_EQ(visible_lines(t, 4, 2, 15), "ijklmnop") << "focus on the last line: the bottom two";
  EXPECT_EQ(visible_lines("l1\nl2\nl3\nl4", 80, 2, 9), "l3\nl4");
  EXPECT_EQ(visible_lines("l1\nl2\nl3\nl4", 80, 2, 3), "l1\nl2\x1b[0m") << "no newline at the window's end";
  EXPECT_EQ(visible_lines(t, 4, 0, 15), "mnop") << "at least one line";
  // A dim run from "cd" to "gh" is cut at "e": the window starts dim again.
  const std::string styled = "ab\x1b[2mcdefgh\x1b[0mijklmn";
  EXPECT_EQ(visible_lines(styled, 4, 2, styled.find('i')), "\x1b[2mefgh\x1b[0mijkl\x1b[0m");
  EXPECT_EQ(visible_lines(styled, 4, 2, styled.rfind('m')), "\x1b[0mijklmn") << "after the run: its reset leads";
  EXPECT_EQ(terminal_lines(visible_lines(styled, 4, 2, 0), 4), 2);
}

TEST(ChatView, FreshAtFindsTheLastFreshRun) {
  EXPECT_EQ(fresh_at("plain"), std::string::npos);
  EXPECT_EQ(fresh_at("ab\x1b[1;36mcd\x1b[0mef\x1b[1;36mgh"), 17u);
}

}  // namespace
}  // namespace mosaic::cli
