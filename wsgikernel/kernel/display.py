"""Rich output: turn an object into a MIME bundle, the way IPython's formatters do.

``mime_bundle(obj)`` always gives ``text/plain`` (the repr) and adds whatever
the object's ``_repr_*_`` methods return.  The methods are looked up on the
type, not the instance, so a proxy whose ``__getattr__`` answers every name
(a mock, an RPC stub) is not mistaken for a rich object.  A ``_repr_*_``
method that raises or returns the wrong type is skipped: the user still gets
``text/plain`` and the cell does not fail.  Binary images are base64 text, as
in nbformat.
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
REPR_LIMIT = 1 << 20  # a text/plain repr longer than this is cut, to keep records bounded


def plain_text(obj):
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not fail the cell
        text = "<%s object (repr failed: %s: %s)>" % (type(obj).__name__,
                                                     type(exc).__name__, exc)
    if len(text) > REPR_LIMIT:
        text = text[:REPR_LIMIT] + "... [repr cut at %d characters]" % REPR_LIMIT
    return text


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


def mime_bundle(obj):
    """(data, metadata) for ``obj``: text/plain plus every rich form it offers."""
    data, metadata = {}, {}
    bundle_method = _lookup(obj, "_repr_mimebundle_")
    if bundle_method is not None:
        try:
            produced = bundle_method(obj, include=None, exclude=None)
        except Exception:
            produced = None
        if isinstance(produced, tuple) and len(produced) == 2:
            produced, extra = produced
            if isinstance(extra, dict):
                metadata.update(extra)
        if isinstance(produced, dict):
            for mime, value in produced.items():
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
        try:
            value, meta = _normalise(mime, method(obj))
        except Exception:
            continue
        if value is not None:
            data[mime] = value
            if meta:
                metadata[mime] = meta
    if "text/plain" not in data:
        data["text/plain"] = plain_text(obj)
    return data, metadata
