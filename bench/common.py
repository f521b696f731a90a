"""What the benches share: the results table."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    """A markdown table, ready to paste into a note."""
    table = [tuple(header)] + [tuple(c) for c in cells]
    widths = [max(len(c[i]) for c in table) for i in range(len(header))]
    for i, c in enumerate(table):
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
        if i == 0:
            print("| " + " | ".join("-" * w for w in widths) + " |")
