"""Regular expressions of exactly the strings a parameter accepts, for converters.py.

Numeric ranges are encoded into the expression (``integer_range``, ``decimal_range``), so
a published JSON Schema ``pattern`` refuses ``wait=3601`` as surely as the code does.
Patterns are written in the common subset of Python and ECMA-262 syntax (no ``\\d``, no
inline flags): ``[0-9]``, character classes, groups.
"""

import re
from decimal import Decimal


def integer_range(lo, hi=None):
    """Regex (unanchored) of the decimal integers lo <= n <= hi, no leading zeros; hi None:
    unbounded.  ``integer_range(1, 12)`` is ``(?:[1-9]|1[0-2])``."""
    parts = []
    if lo == 0:
        parts.append("0")
        lo = 1
    if hi is not None and hi < lo:
        return alternatives(parts)
    top = len(str(hi)) if hi is not None else len(str(lo))
    full = []  # lengths whose every number is in range: one [1-9][0-9]{m,n} for a run
    for length in range(len(str(lo)), top + 1):
        a = max(lo, 10 ** (length - 1))
        b = 10 ** length - 1 if hi is None else min(hi, 10 ** length - 1)
        if a == 10 ** (length - 1) and b == 10 ** length - 1:
            full.append(length)
        elif a <= b:
            parts.append(_same_length(str(a), str(b)))
    if full:
        shortest, longest = full[0] - 1, full[-1] - 1  # contiguous: only the ends can be partial
        parts.append("[1-9]" if longest == 0 else "[1-9][0-9]{%d,%d}" % (shortest, longest))
    if hi is None:
        parts.append("[1-9][0-9]{%d,}" % len(str(lo)))  # more digits than lo: larger
    return alternatives(parts)


def _same_length(a, b):
    """Regex of the digit strings from a to b, both of the same length."""
    if a == b:
        return a
    if len(a) == 1:
        return _digits(int(a), int(b))
    if a[0] == b[0]:
        return a[0] + _same_length(a[1:], b[1:])
    rest = len(a) - 1
    first, last, parts = int(a[0]), int(b[0]), []
    if a[1:] != "0" * rest:
        parts.append(a[0] + _same_length(a[1:], "9" * rest))
        first += 1
    tail = None
    if b[1:] != "9" * rest:
        tail = b[0] + _same_length("0" * rest, b[1:])
        last -= 1
    if first <= last:
        parts.append("%s[0-9]{%d}" % (_digits(first, last), rest))
    if tail:
        parts.append(tail)
    return alternatives(parts)


def _digits(first, last):
    return str(first) if first == last else "[%d-%d]" % (first, last)


def alternatives(parts):
    if not parts:
        return "(?!)"  # matches nothing
    return parts[0] if len(parts) == 1 else "(?:%s)" % "|".join(parts)


FRACTION = r"(?:\.[0-9]+)?"


def decimal_range(lo, hi=None):
    """Regex of the decimal numerals (``12``, ``0.5``; no sign, no exponent) whose value is
    in [lo, hi]; ``lo`` is a whole number, ``hi`` any number (None: unbounded)."""
    if hi is None:
        return integer_range(lo) + FRACTION
    whole, _, fraction = format(Decimal(hi), "f").partition(".")
    whole, fraction = int(whole), fraction.rstrip("0")
    parts = []
    if whole - 1 >= lo:
        parts.append(integer_range(lo, whole - 1) + FRACTION)
    if whole >= lo:
        parts.append(r"%d(?:\.%s)?" % (whole, _fraction_at_most(fraction)))
    return alternatives(parts)


def _fraction_at_most(digits):
    """Regex of the non-empty digit strings s with 0.s <= 0.digits."""
    if not digits:
        return "0+"
    first, rest = int(digits[0]), digits[1:]
    parts = ["%s[0-9]*" % _digits(0, first - 1)] if first else []
    parts.append(digits[0] + ("(?:%s)?" % _fraction_at_most(rest) if rest else "0*"))
    return alternatives(parts)


def either_case(word):
    """``true`` -> ``[Tt][Rr][Uu][Ee]`` (JSON Schema patterns have no ignore-case flag)."""
    return "".join("[%s%s]" % (c.upper(), c.lower()) if c.isalpha() else re.escape(c)
                   for c in word)


def text_pattern(regex):
    """The schema of the strings that fullmatch ``regex`` (JSON Schema patterns search)."""
    return {"type": "string", "pattern": "^(?:%s)$" % regex}
