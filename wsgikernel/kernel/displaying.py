"""``display()``, ``update_display()`` and ``clear_output()`` in a cell, with or without
IPython: one implementation, reached two ways.

- the ``display`` builtin, always (its ``display_id`` handles update in place);
- IPython's own functions of those names, when IPython is installed and a cell imports
  ``IPython.display``: they are replaced as ``IPython.core.display_functions`` loads
  (importhook.py), so ``HTML``, ``Markdown``, ``Image``, ``JSON``, ``SVG``, ``Latex``
  and ``DisplayHandle`` work as in Jupyter.  Without a shell, IPython's ``display``
  would only print the repr.  The kernel never imports IPython itself.

Case 1: ``display(*objs, include, exclude, metadata, transient, display_id, raw, clear)``
        -> one ``display_data`` per object (``raw``: the object is a bundle already);
        ``display_id`` (a string, or True for a new one) goes in ``transient`` and a
        ``DisplayHandle`` is returned; ``clear`` first clears as ``clear_output(wait=True)``.
Case 2: ``update_display(obj, display_id=...)`` -> ``update_display_data``: the record
        replaces the outputs shown with that id in place (records.py), and followers
        get the update (the console updates an earlier cell's output too).
Case 3: ``clear_output(wait=False)`` -> ``clear_output``: the record's outputs so far
        are cleared, now or (``wait``) when the next output comes.

``get_ipython()`` is a builtin that returns None, as IPython's does outside a shell:
``if get_ipython() is not None:`` guards work, rather than failing with NameError.
"""

from .display import format_bundle
from .importhook import ImportHook

DISPLAY_FUNCTIONS = "IPython.core.display_functions"  # IPython >= 7.23


class DisplayHandle:
    """What ``display(..., display_id=...)`` returns: shows and updates one output."""

    def __init__(self, displays, display_id):
        self._displays = displays
        self.display_id = display_id

    def __repr__(self):
        return "<DisplayHandle display_id=%s>" % self.display_id

    def display(self, obj, **kwargs):
        self._displays.display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs):
        self._displays.update_display(obj, display_id=self.display_id, **kwargs)


class Displays:
    def __init__(self, emit, report):
        self.emit = emit      # (output): to the running execution's record
        self.report = report  # (exc): a failing _repr_*_ method

    def display(self, *objs, include=None, exclude=None, metadata=None, transient=None,
                display_id=None, raw=False, clear=False, update=False, **kwargs):
        """Case 1 (Case 2 with ``update``); the DisplayHandle when a ``display_id`` is
        given.  A failing ``repr()`` raises into the caller's code, as any call would."""
        if clear:
            self.clear_output(wait=True)
        if display_id is True:
            import uuid  # on first use: most kernels never ask for a new id
            display_id = uuid.uuid4().hex
        transient = dict(transient or {})
        if display_id is not None:
            transient["display_id"] = str(display_id)
        kind = "update_display_data" if update else "display_data"
        for obj in objs:
            if raw and isinstance(obj, dict):
                data, meta = dict(obj), {}
            else:
                data, meta = format_bundle(obj, self.report)
            data = _filtered(data, include, exclude)
            if metadata:
                meta = dict(meta, **metadata)
            output = {"output_type": kind, "data": data, "metadata": meta}
            if transient:
                output["transient"] = transient
            self.emit(output)
        if display_id is not None and not update:
            return DisplayHandle(self, transient["display_id"])
        return None

    def update_display(self, obj, *, display_id, **kwargs):
        """Case 2."""
        kwargs.pop("update", None)
        self.display(obj, display_id=display_id, update=True, **kwargs)

    def clear_output(self, wait=False):
        """Case 3."""
        self.emit({"output_type": "clear_output", "wait": bool(wait)})

    def publish_display_data(self, data, metadata=None, source=None, *, transient=None,
                             **kwargs):
        """IPython's lowest-level door: a bundle as it is."""
        self.display(data, metadata=metadata, transient=transient, raw=True)

    # -- wiring ------------------------------------------------------------------------

    def install(self, builtins):
        builtins.display = self.display
        builtins.get_ipython = get_ipython

    def hook(self):
        """Once per process: IPython's display functions, when a cell imports them."""
        ImportHook(DISPLAY_FUNCTIONS, after=self.into_ipython).install()

    def into_ipython(self, module):
        """IPython's display functions become ours (Cases 1-3)."""
        module.display = self.display
        module.update_display = self.update_display
        module.clear_output = self.clear_output
        module.publish_display_data = self.publish_display_data


def get_ipython():
    """None: there is no IPython shell here (see the module doc)."""
    return None


def _filtered(data, include, exclude):
    if include:
        data = {mime: value for mime, value in data.items() if mime in include}
    if exclude:
        data = {mime: value for mime, value in data.items() if mime not in exclude}
    return data
