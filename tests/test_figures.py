"""Inline matplotlib figures (issue 19): real kernels, real matplotlib (the test extra).

kernel/figures.py shows pyplot's figures as images at plt.show() and at the end of a
cell, and a Figure as a value; without matplotlib these are skipped, and the kernel
never imports it unless a cell does.
"""

import base64
import struct

import pytest
import webtest

from helpers import TOKEN, run, value


@pytest.fixture
def testapp(testapp):
    """conftest's client, with the env ``nb``."""
    testapp.post_json("/envs", {"id": "nb"})
    return testapp


def images(record, mime="image/png"):
    return [o for o in record["outputs"] if mime in o.get("data", {})]


def png_size(data):
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", raw[:8]
    return struct.unpack(">II", raw[16:24])


def test_the_kernel_never_imports_matplotlib_itself(testapp):
    assert value(testapp, "nb", "import sys\n'matplotlib' in sys.modules") == "False"


@pytest.fixture
def plotting(testapp):
    pytest.importorskip("matplotlib")
    record = run(testapp, "nb", "import matplotlib.pyplot as plt")
    assert record["status"] == "ok", record
    return testapp


def test_a_figure_is_a_png_of_its_size_shown_once_then_closed(plotting):
    record = run(plotting, "nb", "plt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 3, 2]);")
    assert record["result"] is None, record  # ';' hides the repr, not the figure
    [shown] = images(record)
    assert shown["output_type"] == "display_data"
    assert shown["data"]["text/plain"].startswith("<Figure size 400x300"), shown
    width, height = png_size(shown["data"]["image/png"])
    assert 200 < width <= 400 and 150 < height <= 300, (width, height)  # tight crop
    later = run(plotting, "nb", "1 + 1")
    assert images(later) == [] and value(plotting, "nb", "plt.get_fignums()") == "[]"


def test_show_emits_at_once_in_order(plotting):
    record = run(plotting, "nb", "print('before')\nplt.plot([1]); plt.show()\nprint('after')")
    kinds = [o["output_type"] if o["output_type"] != "stream" else o["text"]
             for o in record["outputs"]]
    assert kinds == ["before\n", "display_data", "after\n"], kinds


def test_a_returned_figure_is_an_image_not_a_repr(plotting):
    record = run(plotting, "nb", "fig, ax = plt.subplots()\nax.plot([3, 1])\nfig")
    assert "image/png" in record["result"], record
    assert [o["output_type"] for o in images(record)] == ["execute_result"]  # not twice
    record = run(plotting, "nb", "display(fig)")
    assert [o["output_type"] for o in images(record)] == ["display_data"]


def test_svg_when_asked_and_none_when_off(plotting, make_test_app):
    record = run(plotting, "nb", "plt.plot([1]);", figure_format="svg")
    [shown] = images(record, "image/svg+xml")
    assert "<svg" in shown["data"]["image/svg+xml"]
    off = webtest.TestApp(make_test_app(inline_figures=False),
                          extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    off.post_json("/envs", {"id": "plain"})
    record = run(off, "plain", "import matplotlib.pyplot as plt\nplt.plot([1]);")
    assert record["status"] == "ok" and images(record) == [], record


def test_a_failing_cell_still_shows_its_figure_then_the_error(plotting):
    record = run(plotting, "nb", "plt.plot([1])\n1 / 0")
    assert [o["output_type"] for o in record["outputs"]][-2:] == ["display_data", "error"]


def test_percent_matplotlib_inline_is_accepted(plotting):
    record = run(plotting, "nb", "%matplotlib inline")
    assert record["status"] == "ok" and record["outputs"] == [], record
    assert value(plotting, "nb", "import matplotlib; matplotlib.get_backend()").lower() == \
        "'agg'"
