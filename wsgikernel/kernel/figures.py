"""Inline figures: matplotlib's, shown in the cell as images, as matplotlib-inline does.

Nothing here imports matplotlib: a finder on ``sys.meta_path`` waits until the user
imports ``matplotlib.pyplot``, then picks the non-GUI Agg backend before pyplot
chooses one, and puts ``Figures.show`` in the place of ``pyplot.show``.  So an env
that never plots pays nothing in memory or start time.

Case 1: ``plt.show()`` -> every open figure is shown now (a ``display_data`` output
        with the image and ``text/plain``), then closed.
Case 2: the cell ends -> the figures still open are shown, then closed
        (matplotlib-inline's ``close_figures``); one the cell already showed as a
        value is closed without being shown twice.  A cell that fails shows its
        figures too (before its error).
Case 3: a Figure as a value (the cell's result, ``display(fig)``) -> its image
        (``bundle``, which display.py asks for first).

The image format is the execution's ``figure_format`` (``png`` or ``svg``); its
resolution is rcParams' ``savefig.dpi``; the crop is ``bbox_inches="tight"``, as
matplotlib-inline's.  Config ``inline_figures = false`` leaves matplotlib alone.
"""

import base64
import importlib.abc
import io
import sys

MIME = {"png": "image/png", "svg": "image/svg+xml"}


def is_figure(obj):
    cls = type(obj)
    return cls.__name__ == "Figure" and cls.__module__ == "matplotlib.figure"


class Figures:
    def __init__(self, emit):
        self.emit = emit       # (output dict): the executor's display path
        self.format = "png"    # None: inline figures are off for this execution
        self.shown = set()     # ids of the figures this cell showed already

    def install(self):
        sys.meta_path.insert(0, PyplotFinder(self))

    def start_cell(self, figure_format):
        self.format = figure_format
        self.shown = set()

    # -- showing ------------------------------------------------------------------------

    def bundle(self, figure):
        """(data, metadata) of a Figure as an image; None when figures are off."""
        if self.format not in MIME:
            return None
        buffer = io.BytesIO()
        figure.savefig(buffer, format=self.format, bbox_inches="tight")
        raw = buffer.getvalue()
        value = (base64.b64encode(raw).decode("ascii") if self.format == "png"
                 else raw.decode("utf-8"))
        self.shown.add(id(figure))
        return {MIME[self.format]: value, "text/plain": repr(figure)}, {}

    def show(self, *args, **kwargs):
        """``pyplot.show``: every open figure, now (Case 1)."""
        self.flush()

    def flush(self):
        """Show the open figures not shown yet, and close them all (Case 2)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None or self.format not in MIME or not getattr(pyplot, "_wk_inline",
                                                                    False):
            return
        try:
            managers = pyplot._pylab_helpers.Gcf.get_all_fig_managers()
            for manager in managers:
                figure = manager.canvas.figure
                if id(figure) not in self.shown:
                    data, metadata = self.bundle(figure)
                    self.emit({"output_type": "display_data", "data": data,
                               "metadata": metadata})
        finally:
            pyplot.close("all")


class PyplotFinder(importlib.abc.MetaPathFinder):
    """Finds ``matplotlib.pyplot`` as the other finders do, with a loader that sets it
    up for inline figures around its import."""

    def __init__(self, figures):
        self.figures = figures

    def find_spec(self, name, path, target=None):
        if name != "matplotlib.pyplot":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = InlineLoader(spec.loader, self.figures)
                return spec
        return None


class InlineLoader(importlib.abc.Loader):
    def __init__(self, loader, figures):
        self.loader = loader
        self.figures = figures

    def __getattr__(self, name):  # resources, get_source...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        inline = self.figures.format in MIME
        if inline:  # pyplot's package is imported by now: the import system did it first
            sys.modules["matplotlib"].rcParams["backend"] = "agg"  # before pyplot picks one
        self.loader.exec_module(module)
        if inline:
            figures = self.figures

            def show(*args, **kwargs):  # a function: pyplot sets attributes on its show
                figures.show()
            show.__doc__ = getattr(module.show, "__doc__", None)
            module.show = show
            module._wk_inline = True
