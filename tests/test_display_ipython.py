"""display(), update_display(), clear_output() and IPython.display in real kernels (issue 19).

The ``display`` builtin and its handles need nothing installed; IPython's classes and
functions are used when IPython is (the test extra), and those tests skip without it.
"""

import base64
import json
import struct
import zlib

import pytest

from helpers import run, value


@pytest.fixture
def testapp(testapp):
    """conftest's client, with the env ``dp``."""
    testapp.post_json("/envs", {"id": "dp"})
    return testapp


def stream_events(testapp, code, env="dp"):
    res = testapp.post_json("/envs/%s/execute" % env, {"code": code, "stream": True})
    return [json.loads(line) for line in res.text.splitlines() if line.strip()]


def tiny_png():
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def test_the_kernel_never_imports_ipython_itself(testapp):
    assert value(testapp, "dp", "import sys\n'IPython' in sys.modules") == "False"


def test_get_ipython_is_none_so_the_usual_guard_works(testapp):
    record = run(testapp, "dp", "shell = get_ipython()\n"
                 "where = 'notebook' if get_ipython() else 'plain'\nwhere, shell")
    assert record["status"] == "ok", record
    assert record["result"]["text/plain"] == "('plain', None)"


def test_a_display_handle_updates_its_output_in_place(testapp):
    record = run(testapp, "dp", "h = display('first', display_id=True)\nh.update('second')\n"
                 "display('other', display_id='o')\nh")
    shown = [o for o in record["outputs"] if o["output_type"] == "display_data"]
    assert [o["data"]["text/plain"] for o in shown] == ["'second'", "'other'"], record
    assert shown[1]["transient"] == {"display_id": "o"}
    assert record["result"]["text/plain"].startswith("<DisplayHandle display_id=")


def test_raw_bundles_include_exclude_and_metadata(testapp):
    record = run(testapp, "dp", "display({'text/html': '<i>x</i>', 'text/plain': 'x'}, raw=True)\n"
                 "class R:\n    def _repr_html_(self): return '<b>r</b>'\n"
                 "display(R(), exclude=['text/html'], metadata={'k': 1})\n"
                 "display(R(), include=['text/html'])")
    first, second, third = [o for o in record["outputs"] if o["output_type"] == "display_data"]
    assert first["data"] == {"text/html": "<i>x</i>", "text/plain": "x"}
    assert list(second["data"]) == ["text/plain"] and second["metadata"] == {"k": 1}
    assert list(third["data"]) == ["text/html"]


def test_an_update_of_an_earlier_cells_output_is_streamed(testapp):
    run(testapp, "dp", "display('v1', display_id='progress')")
    events = stream_events(testapp, "display.__self__.update_display('v2', "
                           "display_id='progress')")
    updates = [e for e in events if e.get("output_type") == "update_display_data"]
    assert updates and updates[0]["transient"] == {"display_id": "progress"}, events
    assert updates[0]["data"]["text/plain"] == "'v2'"
    assert events[-1]["outputs"] == []  # nothing added to this cell


# -- with IPython installed ------------------------------------------------------------

@pytest.fixture
def ipython(testapp):
    pytest.importorskip("IPython")
    return testapp


def test_ipython_display_objects_are_rich_outputs(ipython):
    png = base64.b64encode(tiny_png()).decode()
    record = run(ipython, "dp", "import base64\n"
                 "from IPython.display import display, HTML, Markdown, JSON, SVG, Latex, Image\n"
                 "display(HTML('<b>h</b>'), Markdown('*m*'), JSON({'a': 1}), "
                 "SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'), Latex('$x$'))\n"
                 "display(Image(data=base64.b64decode(%r)))\nHTML('<i>last</i>')" % png)
    assert record["status"] == "ok", record
    shown = [o["data"] for o in record["outputs"] if o["output_type"] == "display_data"]
    assert [sorted(set(d) - {"text/plain"}) for d in shown] == [
        ["text/html"], ["text/markdown"], ["application/json"], ["image/svg+xml"],
        ["text/latex"], ["image/png"]], shown
    assert shown[0]["text/html"] == "<b>h</b>"
    assert shown[2]["application/json"] == {"a": 1}
    assert base64.b64decode(shown[5]["image/png"]) == tiny_png()
    assert record["result"]["text/html"] == "<i>last</i>"


def test_ipython_clear_output_now_and_with_wait(ipython):
    record = run(ipython, "dp", "from IPython.display import clear_output\nprint('a')\n"
                 "display('shown')\nclear_output()\nprint('b')")
    assert record["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "b\n"}]
    assert record["stdout"] == "b\n"
    record = run(ipython, "dp", "print('a')\nclear_output(wait=True)\nprint('b')\n"
                 "clear_output(wait=True)")
    assert record["stdout"] == "b\n", record  # the last wait had nothing to wait for
    events = stream_events(ipython, "print('a')\nclear_output()\nprint('b')")
    kinds = [e["event"] for e in events if e["event"] != "heartbeat"]
    runs = [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]
    assert runs == ["accepted", "output", "clear_output", "output", "record"], events


def test_ipython_update_display_and_display_handles(ipython):
    record = run(ipython, "dp", "from IPython.display import display, update_display, HTML\n"
                 "h = display(HTML('<b>1</b>'), display_id=True)\n"
                 "update_display(HTML('<b>2</b>'), display_id=h.display_id)\n"
                 "h.update(HTML('<b>3</b>'))")
    [shown] = [o for o in record["outputs"] if o["output_type"] == "display_data"]
    assert shown["data"]["text/html"] == "<b>3</b>", record
    assert value(ipython, "dp", "from IPython import get_ipython\nget_ipython() is None") == \
        "True"


def test_the_notebook_export_is_valid_nbformat(ipython):
    nbformat = pytest.importorskip("nbformat")
    run(ipython, "dp", "from IPython.display import display, HTML, clear_output\n"
        "h = display(HTML('<b>x</b>'), display_id='d')\nh.update(HTML('<b>y</b>'))\nprint(1)")
    run(ipython, "dp", "print('gone')\nclear_output()\n1/0")
    text = ipython.get("/envs/dp/notebook").text
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", ())]
    assert {"output_type": "display_data", "data": {"text/html": "<b>y</b>",
                                                   "text/plain": "<IPython.core.display.HTML "
                                                   "object>"}, "metadata": {}} in outputs
    assert not any("gone" in o.get("text", "") for o in outputs)
