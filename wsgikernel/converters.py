"""Parameter converters that carry the JSON schema of exactly what they accept.

A converter is the validation that runs on one request parameter *and* the
description the OpenAPI document publishes for it, so the two cannot drift:

* ``convert(value)`` takes a JSON value (a JSON body) or a string (a query
  string, a path segment, a form field) and returns the Python value, or
  raises ``ValueError`` naming what was expected.
* ``json`` is the JSON schema of the values a JSON body may hold there
  (typed values, and also the strings of ``text``: the service merges every
  source into one set of parameters, so ``{"wait": "5"}`` means ``wait=5``).
* ``text`` is the schema of the strings accepted (``type: string`` with a
  ``pattern`` or an ``enum``), used for the query, the path and form fields.

A string is accepted exactly when it matches ``text``: the converter checks
the very regular expression it publishes before parsing, and numeric ranges
are encoded into that expression (patterns.py: ``integer_range``, ``decimal_range``), so
``wait=3601`` or ``memory_limit=0`` are refused by the pattern as surely as by
the code.  Patterns are written in the common subset of Python and ECMA-262
syntax (no ``\\d``, no inline flags): ``[0-9]``, character classes, groups.
"""

import json
import math
import re

from .jsonpolicy import find_lone_surrogate, has_lone_surrogate
from .patterns import alternatives, decimal_range, either_case, integer_range, text_pattern

MAX_COUNT = 2 ** 53 - 1     # the largest integer every JSON client reads exactly
MAX_SECONDS = 10 ** 9       # about 31 years: any longer wait or timeout is a mistake
LONE_SURROGATE = ("holds a lone surrogate (such as the JSON escape \\ud800), "
                  "which is not Unicode text and cannot be encoded as UTF-8")
NULL = {"type": "null"}


# -- converters ----------------------------------------------------------------------

class Converter:
    """Base: a string must match ``regex``; subclasses set the schemas and the parsing."""

    regex = None       # what a string must fullmatch (None: any string, see from_text)
    expected = "a valid value"

    def __init__(self):
        self._compiled = re.compile(self.regex) if self.regex is not None else None

    def __call__(self, value):
        if isinstance(value, str):
            if self._compiled is not None and not self._compiled.fullmatch(value):
                raise ValueError("expected %s, got %r" % (self.expected, value[:40]))
            return self.from_text(value)
        return self.from_json(value)

    def from_text(self, value):
        return value

    def from_json(self, value):
        raise ValueError("expected %s, got %s" % (self.expected, _kind(value)))

    @property
    def text(self):
        return text_pattern(self.regex)

    @property
    def json(self):
        """``typed`` widened to strings matching ``text``: one schema, one type list (JSON
        Schema applies ``minimum`` to numbers only, ``pattern`` to strings only)."""
        schema = dict(self.typed)
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = kinds + ["string"]
        schema.update((key, value) for key, value in self.text.items() if key != "type")
        return schema

    def absent(self, text=False):
        """Schema of a value that counts as not given, for a route's conflicts (None: only
        leaving it out does; in JSON, null is "not given" too)."""
        return None if text else NULL


class Text(Converter):
    """Unicode text (no lone surrogates), at most ``max_length`` code points."""

    expected = "a string"

    def __init__(self, max_length=None):
        super().__init__()
        self.max_length = max_length

    def from_text(self, value):
        if has_lone_surrogate(value):
            raise ValueError(LONE_SURROGATE)
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError("at most %d characters" % self.max_length)
        return value

    @property
    def text(self):
        schema = {"type": "string"}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return schema

    json = text


class Pattern(Text):
    """Text that matches ``regex`` (an env id, a file name)."""

    def __init__(self, regex, message):
        self.regex = regex
        self.message = message
        super().__init__()

    def __call__(self, value):
        if not isinstance(value, str) or not self._compiled.fullmatch(value):
            raise ValueError(self.message)
        return value

    @property
    def text(self):
        return text_pattern(self.regex)

    json = text


class Word(Text):
    """One of a few words (``sandbox``: none or bwrap), exactly as written."""

    def __init__(self, *words):
        self.words = words
        super().__init__()

    def __call__(self, value):
        if value not in self.words:
            raise ValueError("expected one of %s, got %s" % (
                ", ".join(self.words), repr(value[:40]) if isinstance(value, str)
                else _kind(value)))
        return value

    @property
    def text(self):
        return {"type": "string", "enum": list(self.words)}

    json = text


BOOLEAN_WORDS = {True: ("1", "true", "yes", "on"), False: ("0", "false", "no", "off", "")}


class Boolean(Converter):
    """true/false, 1/0, and in text also yes/no, on/off (any case); empty text is false."""

    expected = "a boolean (true/false, 1/0)"
    regex = "|".join(either_case(w) for words in BOOLEAN_WORDS.values() for w in words)

    def from_text(self, value):
        return value.lower() in BOOLEAN_WORDS[True]

    def from_json(self, value):
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):
            return bool(value)
        return super().from_json(value)

    typed = {"type": ["boolean", "integer"], "minimum": 0, "maximum": 1}

    def words(self, truth):
        return text_pattern("|".join(either_case(w) for w in BOOLEAN_WORDS[truth]))

    def absent(self, text=False):
        """False, 0, a false word (or null): ``silent`` or ``stream`` not asked for."""
        if text:
            return self.words(False)
        return {"anyOf": [{"const": False}, {"const": 0}, self.words(False), NULL]}


class FalseOnly(Boolean):
    """A boolean the server allows only false of (``why`` says why not true)."""

    def __init__(self, why):
        self.why = why
        super().__init__()

    def from_text(self, value):
        if super().from_text(value):
            raise ValueError(self.why)
        return False

    def from_json(self, value):
        if super().from_json(value):
            raise ValueError(self.why)
        return False

    @property
    def text(self):
        return self.words(False)

    @property
    def json(self):
        return {"anyOf": [{"const": False}, {"const": 0}, self.words(False)]}


class Count(Converter):
    """A whole number in [lo, hi]; a JSON float with no fraction (2.0) counts."""

    def __init__(self, lo=0, hi=MAX_COUNT):
        self.lo, self.hi = lo, hi
        self.regex = integer_range(lo, hi)
        self.expected = "a whole number from %d to %d" % (lo, hi)
        super().__init__()

    def from_text(self, value):
        return int(value)

    def from_json(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is int and self.lo <= value <= self.hi:
            return value
        return super().from_json(value)

    @property
    def typed(self):
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}


class Seconds(Converter):
    """A number of seconds in [lo, hi] (``lo`` whole); text is a plain decimal, e.g. 2.5."""

    def __init__(self, hi=MAX_SECONDS, lo=0):
        self.lo, self.hi = lo, hi
        self.regex = decimal_range(lo, hi)
        self.expected = "a number of seconds from %g to %g" % (lo, hi)
        super().__init__()

    def from_text(self, value):
        return float(value)

    def from_json(self, value):
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and not (isinstance(value, float) and math.isnan(value))
                and self.lo <= value <= self.hi):
            return float(value)
        return super().from_json(value)

    @property
    def typed(self):
        return {"type": "number", "minimum": self.lo, "maximum": self.hi}


class Choice(Converter):
    """One of a few whole numbers (``detail_level``: 0 or 1)."""

    def __init__(self, *values):
        self.values = values
        self.regex = "|".join(str(v) for v in values)
        self.expected = "one of %s" % ", ".join(str(v) for v in values)
        super().__init__()

    def from_text(self, value):
        return int(value)

    def from_json(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema's enum [0, 1] holds 1.0 too
        if type(value) is int and value in self.values:
            return value
        return super().from_json(value)

    @property
    def text(self):
        return {"type": "string", "enum": [str(v) for v in self.values]}

    @property
    def json(self):
        return {"enum": list(self.values) + self.text["enum"]}


class Size(Count):
    """Bytes in [lo, hi]: a whole number, or text such as 512MiB, 2G, 1048576 (binary K, M,
    G, T, as config.size reads them)."""

    UNITS = (("", 1, "[Bb]?"),) + tuple(
        (p, 1024 ** (i + 1), "[%s%s][Ii]?[Bb]?" % (p.upper(), p)) for i, p in enumerate("kmgt"))

    def __init__(self, lo, hi, parse):
        self.parse = parse
        super().__init__(lo, hi)
        self.regex = alternatives([
            integer_range(-(-lo // factor), hi // factor) + suffix
            for _, factor, suffix in self.UNITS if -(-lo // factor) <= hi // factor])
        self.expected = "a size from %d to %d bytes (e.g. 512MiB)" % (lo, hi)
        self._compiled = re.compile(self.regex)

    def from_text(self, value):
        return self.parse(value)


class Strings(Converter):
    """An object of strings (``user_expressions``); in text, that object as JSON."""

    expected = "a JSON object of strings"
    _HEX = "[0-9A-Fa-f]"
    _STRING = (r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]'    # a character or a short escape,
               r'|\\u(?:[0-9A-Ca-cEeFf]%s{3}|[Dd][0-7]%s{2})'    # \u that is no surrogate,
               r'|\\u[Dd][89ABab]%s{2}\\u[Dd][C-Fc-f]%s{2})*"'  # or a surrogate pair
               % (_HEX, _HEX, _HEX, _HEX))
    _SPACE = "[ \\t\\n\\r]*"
    _PAIR = _STRING + _SPACE + ":" + _SPACE + _STRING
    regex = "%s\\{%s(?:%s(?:%s,%s%s)*%s)?\\}%s" % (
        _SPACE, _SPACE, _PAIR, _SPACE, _SPACE, _PAIR, _SPACE, _SPACE)

    def from_text(self, value):
        return self.from_json(json.loads(value))

    def from_json(self, value):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return super().from_json(value)
        if find_lone_surrogate(value):
            raise ValueError(LONE_SURROGATE)
        return value

    typed = {"type": "object", "additionalProperties": {"type": "string"}}

    @property
    def text(self):
        return dict(text_pattern(self.regex), contentMediaType="application/json")


class Resources(Converter):
    """A batch job's resources, in a JSON body only: {"cpus": 4, "mem": "8G", "gpus": 1,
    "time": "2:00:00", "partition": "gpu"} (Slurm's own notations for mem and time)."""

    expected = 'a JSON object such as {"cpus": 4, "mem": "8G"}'
    FIELDS = {
        "cpus": {"type": "integer", "minimum": 1, "maximum": 65536},
        "gpus": {"type": "integer", "minimum": 0, "maximum": 1024},
        "mem": {"type": "string", "pattern": "^[1-9][0-9]{0,9}[KMGT]?$"},
        "time": {"type": "string",
                 "pattern": "^(?:[0-9]{1,4}-)?[0-9]{1,4}(?::[0-9]{1,2}){0,2}$"},
        "partition": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    }

    def __init__(self, refused=None):
        self.refused = refused  # why none may be asked for (this server has no scheduler)
        super().__init__()

    def from_text(self, value):
        raise ValueError("resources go in a JSON body, as an object")

    def from_json(self, value):
        if not isinstance(value, dict):
            return super().from_json(value)
        if value and self.refused:
            raise ValueError(self.refused)
        for key, item in value.items():
            schema = self.FIELDS.get(key)
            if schema is None:
                raise ValueError("unknown resource %r (known: %s)" % (
                    key[:40], ", ".join(sorted(self.FIELDS))))
            if schema["type"] == "integer":
                if isinstance(item, float) and item.is_integer():
                    item = value[key] = int(item)  # JSON Schema's integer holds 4.0 too
                if type(item) is not int or not schema["minimum"] <= item <= schema["maximum"]:
                    raise ValueError("%s must be a whole number from %d to %d"
                                     % (key, schema["minimum"], schema["maximum"]))
            elif not isinstance(item, str) or not re.fullmatch(schema["pattern"], item):
                raise ValueError("%s must match %s" % (key, schema["pattern"]))
        return dict(value)

    text = {"not": {}, "description": "only in a JSON body"}

    @property
    def json(self):
        if self.refused:
            return {"type": "object", "maxProperties": 0}
        return {"type": "object", "additionalProperties": False, "properties": self.FIELDS}


class Anything(Converter):
    """No validation here: the handler answers whatever it gets (the original API)."""

    def from_json(self, value):
        return value

    text = {"type": "string"}
    json = {}


def _kind(value):
    return "null" if value is None else type(value).__name__
