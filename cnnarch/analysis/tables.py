"""Plain-text tables and number formats for the analysis results' ``render()`` methods."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def text_table(header: Sequence[str], rows: Iterable[Sequence], right: Iterable[int] = ()) -> str:
    """Aligned columns, two spaces apart; ``right`` holds the indices of right-aligned
    (numeric) columns. Trailing spaces are dropped."""
    right = set(right)
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in cells)


def giga_or_mega(n: int) -> str:
    """A count in G (>= 10^9, three decimals) or M (one decimal): 1.814 G, 40.6 M."""
    return f"{n / 1e9:.3f} G" if n >= 1e9 else f"{n / 1e6:.1f} M"


def shape_text(shape: Iterable[int]) -> str:
    """(3, 224, 224) -> "3x224x224"."""
    return "x".join(str(s) for s in shape)


def signed_diff(x: float) -> str:
    """A difference with its sign, one decimal; "0.0" when it rounds to zero."""
    return "0.0" if round(x, 1) == 0 else f"{x:+.1f}"
