#!/usr/bin/env python3
"""Build the training corpus from Debian's King James Bible (public domain).

    apt-get install -y bible-kjv bible-kjv-text      # once (as root)
    python3 tools/train/prepare_corpus.py            # -> tools/train/data/{corpus,heldout}.txt

Source: the Debian packages bible-kjv-text (the text, /usr/lib/bible.data, stored in
the Bible Retrieval System's compressed format) and bible-kjv (the `bible` program that
reads it). /usr/share/doc/bible-kjv-text/copyright: "The copyright for the King James
Version text of the Bible is expired since the translation was done in 1611".

Output format (plain UTF-8, deterministic: byte-identical on every run):
    one chapter per paragraph, chapters separated by one blank line;
    a chapter = its heading line ("Genesis 1", "Song of Solomon 2", "1 John 4")
                followed by one verse per line, verse numbers dropped.
Split: chapter k (0-based, canon order, 1189 chapters) goes to heldout.txt when
k % 50 == 49 (23 chapters, ~2% of the text), to corpus.txt otherwise.

Prints the sizes and the sha256 of both files.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VERSE = re.compile(r"^\s+(\d+) (.*)$")
ALL = "gen1:1-rev22:21"   # the whole canon in one range


def dump_bible(bible: str) -> str:
    # -l with a huge width: no line wrapping (the default wraps at $COLUMNS).
    env = dict(os.environ, COLUMNS="100000", LC_ALL="C")
    r = subprocess.run([bible, "-l100000", ALL], capture_output=True, text=True, env=env, check=True)
    return r.stdout


def parse(raw: str):
    """-> list of (heading, [verse texts])."""
    chapters = []
    expect = 1
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = VERSE.match(line)
        if m:
            if not chapters:
                raise SystemExit(f"verse before any chapter heading: {line!r}")
            n = int(m.group(1))
            if n != expect:
                raise SystemExit(f"{chapters[-1][0]}: verse {n} where {expect} was expected")
            expect += 1
            text = " ".join(m.group(2).split())   # collapse any double spaces
            chapters[-1][1].append(text)
        else:
            chapters.append((" ".join(line.split()), []))
            expect = 1
    return chapters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(HERE, "data"))
    ap.add_argument("--heldout-every", type=int, default=50, help="chapter k is held out when k %% N == N-1")
    ap.add_argument("--bible", default=shutil.which("bible") or "/usr/bin/bible")
    a = ap.parse_args()
    if not os.path.exists(a.bible) or not os.path.exists("/usr/lib/bible.data"):
        sys.exit("the `bible` program or /usr/lib/bible.data is missing: "
                 "apt-get install -y bible-kjv bible-kjv-text")

    chapters = parse(dump_bible(a.bible))
    n_verses = sum(len(v) for _, v in chapters)
    if len(chapters) != 1189 or n_verses != 31102:
        sys.exit(f"expected 1189 chapters / 31102 verses, got {len(chapters)} / {n_verses}")
    for h, v in chapters:
        if not v:
            sys.exit(f"chapter {h!r} has no verses")

    train, held = [], []
    for k, (head, verses) in enumerate(chapters):
        block = head + "\n" + "\n".join(verses) + "\n"
        (held if k % a.heldout_every == a.heldout_every - 1 else train).append(block)

    os.makedirs(a.out_dir, exist_ok=True)
    for name, blocks in (("corpus.txt", train), ("heldout.txt", held)):
        text = "\n".join(blocks)
        if not text.isascii():
            sys.exit(f"{name}: unexpected non-ASCII text")
        data = text.encode("utf-8")
        path = os.path.join(a.out_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(blocks)} chapters, {len(data)} bytes, {len(text.split())} words, "
              f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
