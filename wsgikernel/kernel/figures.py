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
import io
import sys

from .importhook import ImportHook

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
        ImportHook("matplotlib.pyplot", self.before_pyplot, self.after_pyplot).install()

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


    # -- pyplot's import (importhook.py) ---------------------------------------------------

    def before_pyplot(self, module):
        if self.format in MIME:  # pyplot's package is imported by now (its parent, first)
            sys.modules["matplotlib"].rcParams["backend"] = "agg"  # before pyplot picks one

    def after_pyplot(self, module):
        if self.format not in MIME:
            return
        figures = self

        def show(*args, **kwargs):  # a function: pyplot sets attributes on its show
            figures.show()
        show.__doc__ = getattr(module.show, "__doc__", None)
        module.show = show
        module._wk_inline = True
