"""Chinese numerals as used in article numbers (第一百零三条)."""

from __future__ import annotations

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
          "七": 7, "八": 8, "九": 9}
UNITS = {"十": 10, "百": 100, "千": 1000}
CHARS = "".join(DIGITS) + "".join(UNITS)


def cn_to_int(text: str) -> int | None:
    """Convert 一百零三 → 103, 十九 → 19, 二十 → 20; also plain ASCII digits. None if invalid."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if not text or any(c not in CHARS for c in text):
        return None
    total, current = 0, 0
    for c in text:
        if c in DIGITS:
            current = DIGITS[c]
        else:
            unit = UNITS[c]
            total += (current or 1) * unit
            current = 0
    return total + current


def int_to_cn(n: int) -> str:
    """Convert 103 → 一百零三, 19 → 十九 (the form laws use in article numbers)."""
    if n <= 0:
        return "零"
    names = "零一二三四五六七八九"
    parts = []
    for value, unit in ((1000, "千"), (100, "百"), (10, "十")):
        d, n = divmod(n, value)
        if d:
            parts.append(names[d] + unit)
        elif parts and n:
            parts.append("零")
    if n:
        parts.append(names[n])
    text = "".join(parts).replace("零零", "零")
    if text.startswith("一十"):
        text = text[1:]
    return text
