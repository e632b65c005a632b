"""Plain-text tables for the terminal (no dependency: the bench must run on a bare venv)."""

from __future__ import annotations

from collections.abc import Sequence


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]],
          note: str = "") -> str:
    cells = [[str(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        # first column left-aligned (labels), the rest right-aligned (numbers)
        return "  " + "  ".join(c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    out = [title, line(cells[0]), "  " + "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    if note:
        out += ["  " + n for n in note.splitlines()]
    return "\n".join(out)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "+-.≥<>") and text != "-"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%" if fraction < 0.9995 else f"{fraction * 100:.2f}%"
