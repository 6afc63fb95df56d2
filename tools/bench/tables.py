"""Printing a benchmark table as aligned text or as Markdown (for docs/PERFORMANCE.md)."""


def print_table(head, rows, markdown=False, width=18):
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(str(c) for c in r) + " |")
    else:
        for r in [head] + rows:
            print(" ".join(f"{str(c):>{width}s}" for c in r))
