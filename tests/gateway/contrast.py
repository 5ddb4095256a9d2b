"""WCAG 2.x contrast ratio, computed as the spec defines it (relative luminance of sRGB colours)."""

from __future__ import annotations

import re

AA_NORMAL_TEXT = 4.5


def parse_colour(value: str) -> tuple[int, int, int]:
    """`#abc`, `#aabbcc` or `rgb(r, g, b)` (what getComputedStyle answers) -> (r, g, b)."""
    value = value.strip().lower()
    if m := re.fullmatch(r"#([0-9a-f]{3})", value):
        return tuple(int(c * 2, 16) for c in m.group(1))  # type: ignore[return-value]
    if m := re.fullmatch(r"#([0-9a-f]{6})", value):
        h = m.group(1)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if m := re.fullmatch(r"rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*1(?:\.0+)?)?\)", value):
        r, g, b = (int(x) for x in m.groups())
        return r, g, b
    raise ValueError(f"not an opaque colour: {value!r}")


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    a, b = relative_luminance(parse_colour(foreground)), relative_luminance(parse_colour(background))
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)
