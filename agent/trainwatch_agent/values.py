"""Turn raw readings into values the server accepts.

The server refuses a whole sample when one field is out of range (see its
monitoring/validation.py), so every field goes through one of these: a value that
cannot be sent as read is clamped when it is merely a little off (a percent of
100.4 from rounding) and becomes null when it is nonsense.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_BIGINT = 2**63 - 1
MAX_NUMBER = 1e15
_SURROGATE = re.compile("[\ud800-\udfff]")


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or abs(number) > MAX_NUMBER:
        return None
    return number


def percent(value: Any) -> float | None:
    """0..100, rounded to 0.01; slightly out of range is clamped, far out of range is null."""
    number = _finite(value)
    if number is None or not -1.0 <= number <= 101.0:
        return None
    return round(min(100.0, max(0.0, number)), 2)


def ratio_percent(part: Any, whole: Any) -> float | None:
    part_number, whole_number = _finite(part), _finite(whole)
    if part_number is None or not whole_number:
        return None
    return percent(100.0 * part_number / whole_number)


def non_negative(value: Any, digits: int = 2) -> float | None:
    number = _finite(value)
    if number is None or number < 0:
        return None
    return round(number, digits)


def counter(value: Any) -> int | None:
    """A whole number 0..2**63-1 (a byte count, a total since boot)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_BIGINT:
        return None
    return value


def temperature(value: Any) -> float | None:
    number = _finite(value)
    if number is None or not -100 <= number <= 250:
        return None
    return round(number, 1)


def text(value: Any, limit: int) -> str | None:
    """A string without NULs, cut to the server's limit."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        value = str(value)
    return value.replace("\x00", "")[:limit]


def valid_unicode(value: Any) -> Any:
    """`value` with every string in it, dict keys too, made valid Unicode (through dicts and lists).

    Python hands names it could not decode (a process, a disk, the hostname, a label from the
    command line) over as lone surrogates: the byte 0xff becomes '\\udcff'. JSON would send
    those as `\\udcff` escapes, which the server cannot store. Instead the original bytes are
    decoded as UTF-8, with U+FFFD for whatever is not UTF-8.
    """
    if isinstance(value, str):
        return _repaired(value)
    if isinstance(value, dict):
        return {_repaired(k) if isinstance(k, str) else k: valid_unicode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [valid_unicode(v) for v in value]
    return value


def _repaired(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        # A surrogate that no decoding made (outside U+DC80..U+DCFF): no bytes to recover.
        return _SURROGATE.sub("\ufffd", text)
