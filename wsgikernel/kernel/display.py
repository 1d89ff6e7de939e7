"""Rich output: turn an object into a MIME bundle, the way IPython's formatters do.

A bundle always has ``text/plain`` (the repr) and adds whatever the object's
``_repr_*_`` methods return.  The methods are looked up on the type, not the
instance, so a proxy whose ``__getattr__`` answers every name (a mock, an RPC
stub) is not mistaken for a rich object.  Binary images are base64 text, as in
nbformat.  Two entry points, differing only in what a failure does:

``format_bundle(obj, report)`` -- the shell's, as IPython's DisplayFormatter:
  Case 1: a ``_repr_*_`` method raises -> ``report(exc)`` is called and that
          MIME type is left out (NotImplementedError is not reported: it is
          the documented way to decline); the other types are kept.
  Case 2: a ``_repr_*_`` method returns the wrong type -> left out, silently.
  Case 3: ``repr()`` raises -> the exception propagates to the caller.
``mime_bundle(obj)`` -- never fails: Cases 1 and 2 are silent and a failing
  ``repr()`` gives a ``<T object (repr failed: ...)>`` placeholder.
"""

import base64

# method name -> MIME type, in the order IPython's DisplayFormatter uses.
REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)
BINARY_TYPES = frozenset(("image/png", "image/jpeg"))
# (obj) -> (data, metadata) or None, asked before the _repr_*_ methods: the bundles of
# types that have none of their own (figures.py adds matplotlib's Figure).
FORMATTERS = []
REPR_LIMIT = 1 << 20  # a text/plain repr longer than this is cut, to keep records bounded


def _cut_repr(obj):
    """repr(obj), cut at REPR_LIMIT; whatever repr() raises propagates."""
    text = repr(obj)
    if len(text) > REPR_LIMIT:
        text = text[:REPR_LIMIT] + "... [repr cut at %d characters]" % REPR_LIMIT
    return text


def plain_text(obj):
    """The repr for callers that must never fail: a broken __repr__ gives a placeholder."""
    try:
        return _cut_repr(obj)
    except Exception as exc:
        return "<%s object (repr failed: %s: %s)>" % (type(obj).__name__,
                                                     type(exc).__name__, exc)


def _lookup(obj, name):
    method = getattr(type(obj), name, None)
    return method if callable(method) else None


def _normalise(mime, value):
    """The JSON form of one MIME value, or None if it is not usable."""
    metadata = None
    if isinstance(value, tuple) and len(value) == 2:
        value, metadata = value
    if value is None:
        return None, None
    if mime in BINARY_TYPES:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        elif not isinstance(value, str):
            return None, None
    elif mime == "application/json" or mime.endswith("+json"):
        # nbformat keeps JSON types as JSON (vega-lite, plotly...), not as text.
        if isinstance(value, (str, bytes)) and mime != "application/json":
            return (value.decode("utf-8", "replace") if isinstance(value, bytes) else value), \
                metadata if isinstance(metadata, dict) else None
        if not isinstance(value, (dict, list)):
            return None, None
    elif isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif not isinstance(value, str):
        return None, None
    return value, metadata if isinstance(metadata, dict) else None


def _ignore(exc):
    pass


def mime_bundle(obj):
    """(data, metadata) for ``obj``; never raises (see the module doc)."""
    return _bundle(obj, _ignore, plain_text)


def format_bundle(obj, report):
    """(data, metadata) for ``obj``; ``report(exc)`` for a failing ``_repr_*_``
    method, and a failing ``repr()`` raises (see the module doc)."""
    return _bundle(obj, report, _cut_repr)


def _call(method, obj, report, *args, **kwargs):
    """``method(obj)``, or None if it raised (then reported, as IPython's
    catch_format_error does, unless it declined with NotImplementedError)."""
    try:
        return method(obj, *args, **kwargs)
    except NotImplementedError:
        return None
    except Exception as exc:
        report(exc)
        return None


def _bundle(obj, report, text_plain):
    for formatter in FORMATTERS:
        found = _call(formatter, obj, report)
        if found is not None:
            return found
    data, metadata = {}, {}
    bundle_method = _lookup(obj, "_repr_mimebundle_")
    if bundle_method is not None:
        produced = _call(bundle_method, obj, report, include=None, exclude=None)
        if isinstance(produced, tuple) and len(produced) == 2:
            produced, extra = produced
            if isinstance(extra, dict):
                metadata.update(extra)
        if isinstance(produced, dict):
            for mime, value in produced.items():
                if not isinstance(mime, str):
                    continue
                value, meta = _normalise(mime, value)
                if value is not None:
                    data[mime] = value
                    if meta:
                        metadata[mime] = meta
    for name, mime in REPR_METHODS:
        if mime in data:
            continue
        method = _lookup(obj, name)
        if method is None:
            continue
        value, meta = _normalise(mime, _call(method, obj, report))
        if value is not None:
            data[mime] = value
            if meta:
                metadata[mime] = meta
    if "text/plain" not in data:
        data["text/plain"] = text_plain(obj)
    return data, metadata
