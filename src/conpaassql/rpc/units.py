"""Sizes as people read them."""

from __future__ import annotations

UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(size: int | float) -> str:
    """A size in decimal units: ``512 B``, ``1.5 kB``, ``12.3 MB``."""
    value = float(size)
    for unit in UNITS[:-1]:
        if abs(value) < 1000:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} {UNITS[-1]}"
