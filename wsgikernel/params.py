"""Request parameters: read the body safely and merge every source into one dict.

``parse_params(environ, max_body)`` is the only code that reads ``wsgi.input``.
It merges, later sources winning: path segments < query string < body (a form,
multipart form or JSON object).  Path segments are re-applied last so a body
cannot redirect a request to another environment than its URL names.

Risks handled here: a body is never read past ``CONTENT_LENGTH`` (reading
``wsgi.input`` to EOF hangs under wsgiref), a body over ``max_body`` is refused
from its declared length before a byte is read, and a body without a length is
refused (411) rather than guessed at.  ``cgi`` is gone in 3.13, so multipart is
parsed with ``email.parser`` (headers) and plain byte splitting.

``require()`` / ``optional()`` read one parameter with a converter and turn
conversion failures into ``MissingParam`` (400) / ``InvalidParam`` (422).
"""

import json
import re
from urllib.parse import parse_qsl

from .control.envid import ENV_ID, ENV_ID_RULE, ENV_ID_RULE_TEXT, env_id  # noqa: F401
from .converters import LONE_SURROGATE, Boolean, Seconds, Text
from .jsonpolicy import find_lone_surrogate
from .errors import (InvalidContentLength, InvalidParam, LengthRequired, MalformedBody,
                     MissingParam, PayloadTooLarge, UnsupportedMediaType)

_LENGTH = re.compile(r"[0-9]{1,19}")
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
SUPPORTED_BODIES = (JSON, FORM, MULTIPART)


def content_length(environ):
    """The declared body length: None when absent, else a non-negative int (or 400)."""
    raw = environ.get("CONTENT_LENGTH", "")
    if raw == "":
        return None
    # ASCII digits only (str.isdigit() accepts '²'), and few enough for int().
    if not _LENGTH.fullmatch(raw):
        raise InvalidContentLength("Content-Length must be a non-negative integer, not %r"
                                   % raw[:40])
    return int(raw)


def check_length(environ, max_body):
    """Decide 411/413 from the headers alone, before anything is read."""
    length = content_length(environ)
    if length is None:
        # RFC 9112 6.3: no Content-Length and no Transfer-Encoding means an empty
        # body (wsgiref even invents CONTENT_TYPE text/plain then).  A chunked body
        # is the one we refuse: its size is unknown until read.
        if environ.get("HTTP_TRANSFER_ENCODING", "").strip():
            raise LengthRequired("send the body with a Content-Length header, not chunked")
        return 0
    if length > max_body:
        raise PayloadTooLarge(length, max_body)
    return length


def read_body(environ, length):
    """Read exactly ``length`` bytes (a short read is a client that went away)."""
    if not length:
        return b""
    stream, chunks, left = environ["wsgi.input"], [], length
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            raise InvalidContentLength("the body ended after %d of %d declared bytes"
                                       % (length - left, length))
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def media_type(environ):
    """('type/subtype', {param: value}) of CONTENT_TYPE, lower-cased type."""
    value = environ.get("CONTENT_TYPE", "")
    parts = value.split(";")
    options = {}
    for part in parts[1:]:
        key, _, val = part.strip().partition("=")
        options[key.strip().lower()] = val.strip().strip('"')
    return parts[0].strip().lower(), options


def _decode(raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the %s is not valid UTF-8" % what) from None


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)  # made once: see jsonpolicy.loads


def loads_strict(text):
    """json.loads that refuses NaN/Infinity and survives absurd nesting (ValueError)."""
    try:
        return _STRICT.decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_json(raw):
    text = _decode(raw, "JSON body")
    try:
        value = loads_strict(text)
    except ValueError as exc:
        raise MalformedBody("the body is not valid JSON: %s" % exc) from None
    if not isinstance(value, dict):
        raise MalformedBody("the JSON body must be an object, not %s" % type(value).__name__)
    return value


def parse_form(raw):
    return _parse_qs(_decode(raw, "form body"), "form body")


def _parse_qs(text, what):
    try:  # %FF that does not decode as UTF-8 is an error, not a U+FFFD
        return dict(parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict"))
    except UnicodeDecodeError:
        raise MalformedBody("the %s is not valid UTF-8 once percent-decoded" % what) from None


_PART_HEADERS_END = re.compile(rb"\r?\n\r?\n")


def parse_multipart(raw, boundary):
    """Fields of a multipart/form-data body; file parts give their content as text."""
    if not boundary:
        raise MalformedBody("a multipart body needs a boundary parameter")
    from email.parser import HeaderParser  # only multipart requests pay for it
    delimiter = b"--" + boundary.encode("latin-1")
    sections = raw.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise MalformedBody("the multipart body is not terminated by its boundary")
    fields = {}
    for section in sections[1:-1]:
        section = section[2:] if section.startswith(b"\r\n") else section.lstrip(b"\n")
        match = _PART_HEADERS_END.search(section)
        if match is None:
            raise MalformedBody("a multipart part has no header block")
        # Browsers send part headers (field names, file names) as UTF-8.
        headers = HeaderParser().parsestr(section[:match.start()].decode("utf-8", "replace"))
        name = headers.get_param("name", header="content-disposition")
        if name is None:  # name="" is a field like any other (a form may send one)
            raise MalformedBody("a multipart part has no name")
        content = section[match.end():]
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        fields[name] = _decode(content, "multipart field %r" % name)
    return fields


def parse_body(environ, raw):
    """Body fields as a dict; an empty body gives {} whatever its declared type."""
    if not raw:
        return {}
    kind, options = media_type(environ)
    if kind == JSON or kind.endswith("+json"):
        return parse_json(raw)
    if kind == FORM:
        return parse_form(raw)
    if kind == MULTIPART:
        return parse_multipart(raw, options.get("boundary"))
    raise UnsupportedMediaType(kind or "(no Content-Type)", SUPPORTED_BODIES)


def parse_query(environ):
    query = environ.get("QUERY_STRING", "")
    if not query:
        return {}
    # PEP 3333 hands QUERY_STRING over as latin-1 decoded bytes; clients send UTF-8.
    try:
        query = query.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise MalformedBody("the query string is not valid UTF-8") from None
    return _parse_qs(query, "query string")


def parse_params(environ, path_args, max_body, raw_body=False):
    """Merge path < query < body, then the path again; the result goes to environ['params'].
    ``raw_body``: the body is not parsed but kept, as bytes, in environ['wsgikernel.body']
    (POST /mcp: JSON-RPC answers a bad body in its own words)."""
    length = check_length(environ, max_body)
    params = parse_query(environ)
    body = read_body(environ, length)
    if raw_body:
        environ["wsgikernel.body"] = body
    else:
        params.update(parse_body(environ, body))
    params.update(path_args)
    return params


# -- reading one parameter ---------------------------------------------------

_MISSING = object()


def require(params, name, convert=str):
    """``convert(params[name])``; MissingParam if absent, InvalidParam if it does not convert."""
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        raise MissingParam(name)
    return _convert(name, value, convert)


def optional(params, name, convert=str, default=None):
    """Like require() but absent (or JSON null) gives ``default``."""
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    return _convert(name, value, convert)


def _convert(name, value, convert):
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidParam(name, str(exc) or "wrong type") from None


# Converters: each takes a JSON value or a form string and raises ValueError.  The
# bounded ones with published schemas live in converters.py (what routes.py declares);
# these are the same rules, unbounded, for code that reads a parameter by hand.

text = Text()
boolean = Boolean()
seconds = Seconds()


def count(value):
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError("expected a whole number, got %r" % (value,))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("expected a whole number, got %r" % (value,)) from None
    if number < 0:
        raise ValueError("expected a non-negative number, got %d" % number)
    return number


def json_object(value):
    """A dict from JSON, or from a form field holding a JSON object."""
    if isinstance(value, str):
        try:
            value = loads_strict(value)
        except ValueError:
            raise ValueError("expected a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("expected an object, got %s" % type(value).__name__)
    if find_lone_surrogate(value):
        raise ValueError(LONE_SURROGATE)
    return value
