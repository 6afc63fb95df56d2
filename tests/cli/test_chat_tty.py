#!/usr/bin/env python3
"""`mosaic chat` in a real terminal (tmux) on the shipped model: the answer redrawn in place
while it denoises (placeholders for masked positions, then the text once), two turns that
keep the history, a Ctrl-C that stops an answer without leaving, /reset, /quit; an answer
taller than a small terminal drawn once; and no escape codes when piped.

    python3 tests/cli/test_chat_tty.py --mosaic build/bin/mosaic
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

MOSAIC = "build/bin/mosaic"
PLACEHOLDER = "\u2591"
# One thread per mosaic process: ctest runs tests side by side, and OpenMP threads of two
# processes spinning on the same cores slow both many times over.
THREADS = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')} OPENBLAS_NUM_THREADS=1"
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "OPENBLAS_NUM_THREADS": "1"}
STATS = re.compile(r"\[(\d+) tokens in [\d.]+ s: \d+ steps, [\d.]+ ms/step, [\d.]+ tokens/s; prompt (\d+) tokens\]")


def tmux(*args):
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def start_chat(test, prefix, cols, rows, *flags):
    """`mosaic chat` in a detached tmux session of cols x rows; test.name is the session's."""
    if not shutil.which("tmux"):
        test.skipTest("tmux is not installed (tools/deps.sh installs it)")
    test.name = f"{prefix}-{time.time_ns()}"
    tmux("new-session", "-d", "-s", test.name, "-x", str(cols), "-y", str(rows),
         f"env {THREADS} {MOSAIC} chat --backend cpu {' '.join(flags)}; echo CHAT-EXITED-$?; sleep 60")


class ChatInATerminal(unittest.TestCase):
    def setUp(self):
        start_chat(self, "mosaic-chat-test", 120, 50)
        self.screens = []

    def tearDown(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)

    def screen(self):
        s = tmux("capture-pane", "-p", "-t", self.name, "-S", "-200")
        self.screens.append(s)
        return s

    def wait_for(self, pattern, timeout=120, count=1):
        t0 = time.time()
        while time.time() - t0 < timeout:
            s = self.screen()
            if len(re.findall(pattern, s)) >= count:
                return s
            time.sleep(0.03)
        self.fail(f"no {pattern!r} (x{count}) on the screen within {timeout} s:\n{self.screens[-1]}")

    def send(self, *keys):
        tmux("send-keys", "-t", self.name, *keys)

    def test_two_turns_ctrl_c_reset_quit(self):
        self.wait_for(r"mosaic chat: mosaic-tiny")
        self.send("/set max_tokens 256", "Enter")
        self.wait_for(r"max_tokens 256")
        # Turn 1: placeholders while it denoises, then the text once and the figures.
        self.send("Tell me of Moses", "Enter")
        final = self.wait_for(STATS.pattern)
        seen_masks = any(PLACEHOLDER in s for s in self.screens)
        self.assertTrue(seen_masks, "no screen showed the masked positions")
        answer_area = final.split("Tell me of Moses", 1)[1].split("[", 1)[0]
        self.assertNotIn(PLACEHOLDER, answer_area)
        first_words = answer_area.strip()[:24]
        self.assertTrue(first_words)
        self.assertEqual(final.count(first_words), 1, "the answer was appended, not redrawn:\n" + final)
        prompt1 = int(STATS.findall(final)[-1][1])
        # Turn 2 keeps the history: its prompt holds turn 1.
        self.send("And Aaron?", "Enter")
        s = self.wait_for(STATS.pattern, count=2)
        prompt2 = int(STATS.findall(s)[-1][1])
        self.assertGreater(prompt2, prompt1 + 10)
        # Ctrl-C mid-answer stops it; the chat goes on.
        self.send("/set max_tokens 2048", "Enter")
        self.wait_for(r"max_tokens 2048")
        self.screens.clear()
        self.send("Speak of the law", "Enter")
        self.wait_for(PLACEHOLDER, timeout=60)
        self.send("C-c")
        self.wait_for(r"\[stopped\]", timeout=60)
        # /reset forgets: the next prompt is short again.
        self.send("/set max_tokens 32", "Enter")
        self.send("/reset", "Enter")
        self.wait_for(r"the conversation is forgotten")
        self.send("Hello", "Enter")
        s = self.wait_for(STATS.pattern, count=3)
        self.assertLess(int(STATS.findall(s)[-1][1]), prompt2)
        self.send("/quit", "Enter")
        self.wait_for(r"CHAT-EXITED-0", timeout=30)


class ChatInASmallTerminal(unittest.TestCase):
    """An answer taller than the screen: the cursor cannot move above the top, so a redraw of
    the whole answer would leave a copy of its top in the scrollback at every step."""

    def setUp(self):
        start_chat(self, "mosaic-chat-small", 60, 10, "--max-tokens", "256")

    def tearDown(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)

    def history(self):
        return tmux("capture-pane", "-p", "-J", "-t", self.name, "-S", "-2000")

    def test_a_tall_answer_is_drawn_once(self):
        t0 = time.time()
        while "mosaic chat" not in self.history():
            self.assertLess(time.time() - t0, 120, self.history())
            time.sleep(0.05)
        tmux("send-keys", "-t", self.name, "Tell me of Moses", "Enter")
        while not STATS.search(self.history()):
            self.assertLess(time.time() - t0, 300, self.history())
            time.sleep(0.05)
        full = self.history()
        self.assertIn("Tell me of Moses", full, "the prompt line is gone from the scrollback:\n" + full)
        answer = full.split("Tell me of Moses", 1)[1].split("[", 1)[0]
        self.assertNotIn(PLACEHOLDER, answer)
        self.assertGreater(len(answer.strip()), 400, "the answer should be taller than the 10-row screen")
        first_words = answer.strip()[:24]
        self.assertEqual(full.count(first_words), 1, "copies of the answer's top in the scrollback:\n" + full)
        tmux("send-keys", "-t", self.name, "/quit", "Enter")


class ChatPiped(unittest.TestCase):
    def test_no_escape_codes_when_piped(self):
        r = subprocess.run([MOSAIC, "chat", "--backend", "cpu", "--max-tokens", "32"],
                           input="Tell me of Moses\n/set steps 16\nAnd Aaron?\n/quit\n",
                           capture_output=True, text=True, timeout=300, env=ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\x1b", r.stdout)
        self.assertNotIn(PLACEHOLDER, r.stdout)
        self.assertEqual(len(STATS.findall(r.stderr)), 2, r.stderr)
        self.assertIn("steps 16", r.stdout)

    def test_the_oldest_turn_goes_when_the_conversation_would_not_fit(self):
        # 38 MiB: the weights (34 MiB) and the dual cache of ~180 tokens, not of ~260.
        r = subprocess.run([MOSAIC, "chat", "--backend", "cpu", "--cache", "dual", "--max-tokens", "64",
                            "--memory-budget", "38MiB"],
                           input="Tell me of Moses\nAnd Aaron and the children of Israel in the wilderness of Sinai?\n"
                                 "What did Pharaoh say?\n",
                           capture_output=True, text=True, timeout=300, env=ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        prompts = [int(p) for _, p in STATS.findall(r.stderr)]
        self.assertEqual(len(prompts), 3, r.stderr)
        self.assertGreater(prompts[1], prompts[0])
        self.assertIn("dropped its oldest turn", r.stderr)
        self.assertLessEqual(prompts[2], prompts[1])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mosaic", default=MOSAIC)
    args, rest = ap.parse_known_args()
    MOSAIC = args.mosaic
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
