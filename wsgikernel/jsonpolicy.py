"""One JSON policy for every byte the service writes: wire frames, env.json, history, HTTP.

What the service writes is strict RFC 8259 JSON in UTF-8, whatever user code
produced:

- a non-finite float (``nan``, ``inf``, ``-inf``) becomes the string
  ``"nan"``, ``"inf"`` or ``"-inf"``, as jupyter_client's ``json_clean`` does
  (JSON has no literal for them, and ``NaN`` makes browsers' ``JSON.parse``
  and most other parsers fail);
- a lone surrogate (``"\\ud800"``, or an undecodable byte kept by
  ``surrogateescape``) becomes U+FFFD, since it cannot be encoded as UTF-8;
- an object JSON has no form for (a set, a custom class in a
  ``_repr_json_``) becomes its ``repr()``.

The fast path is a plain ``json.dumps``; values are cleaned only when it
fails, so an ordinary record pays nothing.  Reading (``loads``) accepts the
``NaN``/``Infinity`` literals that history files written before this policy
may hold and maps them to the same strings, so no stored record can break a
later request.

Input from clients is a different matter: ``params.py`` refuses text with lone
surrogates (422 naming the field) and ``NaN`` in a body (400); this module is
about what the service itself produces.  Imported by the kernel process too:
standard library only, nothing from the HTTP layer.
"""

import json
import math
import re

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONSTANTS = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


def has_lone_surrogate(text):
    """True if ``text`` holds a code point that UTF-8 cannot encode."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def find_lone_surrogate(value):
    """True if a string anywhere in ``value`` (keys included) holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def clean(value, _depth=0):
    """``value`` with every part made JSON-safe under this policy (see the module doc)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if has_lone_surrogate(value) else value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int)):
        return value
    if _depth > 200:  # deeper than any record we make: a self-referencing structure
        return "..."
    if isinstance(value, dict):
        return {_clean_key(key): clean(item, _depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item, _depth + 1) for item in value]
    try:
        return clean(repr(value))
    except Exception:
        return "<%s object>" % type(value).__name__


def _clean_key(key):
    if isinstance(key, str):
        return clean(key)
    if isinstance(key, float) and not math.isfinite(key):
        return clean(key)
    if key is None or isinstance(key, (bool, int, float)):
        return key  # json turns these into strings itself
    return clean(repr(key))


def dumps(value):
    """Compact JSON text of ``value`` under this policy; always encodable as UTF-8."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if text.isascii() or not has_lone_surrogate(text):
            return text
    except (ValueError, TypeError, RecursionError):
        pass
    return json.dumps(clean(value), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)


def encode(value):
    """``dumps(value)`` as UTF-8 bytes."""
    return dumps(value).encode("utf-8")


def _constant(name):
    return _CONSTANTS[name]


_DECODER = json.JSONDecoder(parse_constant=_constant)


def loads(data):
    """Parse JSON text or UTF-8 bytes; legacy NaN/Infinity literals read as strings.

    One decoder, made once: ``json.loads`` with a keyword builds a new one per call,
    which costs as much as decoding a small frame.  Everything the service writes is
    UTF-8; bytes that are not are a ValueError (UnicodeDecodeError)."""
    if not isinstance(data, str):
        data = bytes(data).decode("utf-8")
    return _DECODER.decode(data)
