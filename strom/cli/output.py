"""Human and machine output for the admin commands: aligned text tables and JSON documents."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "-"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "") -> str:
    """Left-aligned columns separated by two spaces; ``None`` cells show as ``-``."""
    text_rows = [[MISSING if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))
    lines = []
    for row in [list(headers), *text_rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def print_json(document: Any) -> None:
    """Pretty-printed JSON on stdout, non-ASCII kept readable."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
