"""complete / inspect / is_complete / variables called directly with a dict namespace.

No kernel process: the namespace is built by running cells with the kernel's
own Shell (so functions get ``<cell N>`` source, as in a kernel).  Objects that
would leave a marker file if completion or inspection ran their code live in
a per-test temporary directory, which is also the current directory.
"""

import builtins
import itertools
import os
import sys
import threading
import warnings

import pytest

from helpers import HANG_GUARD

_cells = itertools.count(9000 + 1000 * (os.getpid() % 50))


def handlers():
    from wsgikernel.kernel.introspect import HANDLERS
    return HANDLERS


def make_namespace(*cells):
    """A namespace as a kernel has it, after running ``cells`` (each must succeed)."""
    from wsgikernel.kernel.execute import Shell
    namespace = {"__builtins__": builtins, "__name__": "__main__"}
    shell = Shell(namespace, lambda output: None)
    for code in cells:
        outcome = shell.run_cell(code, next(_cells))
        assert outcome["status"] == "ok", outcome
    return namespace


def complete(namespace, code, **message):
    reply = handlers()["complete"](namespace, dict(message, code=code))
    assert reply["status"] == "ok"
    assert reply["cursor_end"] == message.get("cursor_pos", len(code))
    return reply


def matches(namespace, code, **message):
    return complete(namespace, code, **message)["matches"]


def inspect_(namespace, code, **message):
    return handlers()["inspect"](namespace, dict(message, code=code))


def is_complete(code):
    return handlers()["is_complete"]({}, {"code": code})


def variables(namespace, **message):
    return handlers()["variables"](namespace, message)["variables"]


TRAPS = '''
def mark(name):
    open(name, "w").close()

class Trap:
    """A class whose dynamic attributes leave marker files."""
    def __init__(self):
        self.plain = [1, 2]
    @property
    def prop(self):
        mark("ran-property")
        return 1
    def __getattr__(self, name):
        mark("ran-getattr")
        raise AttributeError(name)
    def __dir__(self):
        mark("ran-dir")
        return ["dynamic"]
    def method(self, a, b=2):
        """Add things."""
        return a
    @property
    def __class__(self):
        mark("ran-class")
        return int

trap = Trap()
'''


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_no_markers(directory):
    assert not [name for name in os.listdir(directory) if name.startswith("ran-")]


# -- complete: names ------------------------------------------------------------

def test_complete_names_builtins_and_keywords():
    ns = make_namespace("my_value = 1\nmy_other = 2\n_private = 3")
    reply = complete(ns, "my_")
    assert reply["matches"] == ["my_other", "my_value"]
    assert reply["cursor_start"] == 0
    assert "print" in matches(ns, "pri")
    assert "while" in matches(ns, "wh")
    assert matches(ns, "_pri") == ["_private"]
    assert "_private" not in matches(ns, "")


def test_complete_uses_text_before_cursor():
    ns = make_namespace("alpha = 1")
    reply = complete(ns, "x = alp + 1", cursor_pos=7)
    assert reply["matches"] == ["alpha"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (4, 7)


def test_cursor_beyond_the_end_means_the_end():
    reply = handlers()["complete"](make_namespace("alpha = 1"), {"code": "alp", "cursor_pos": 99})
    assert (reply["matches"], reply["cursor_start"], reply["cursor_end"]) == (["alpha"], 0, 3)


def test_cursor_counts_code_points():
    ns = make_namespace("ñandú = 1")
    code = "s = 'héllo'; ñan"
    reply = complete(ns, code)
    assert reply["matches"] == ["ñandú"]
    assert reply["cursor_start"] == len(code) - 3  # code points, not UTF-8 bytes


def test_complete_metadata_types():
    ns = make_namespace("import os\ndef fn(): pass\nclass K: pass\nnumber = 1")
    reply = complete(ns, "")
    kinds = {entry["text"]: entry["type"]
             for entry in reply["metadata"]["_jupyter_types_experimental"]}
    assert (kinds["os"], kinds["fn"], kinds["K"], kinds["number"], kinds["for"]) == (
        "module", "function", "class", "instance", "keyword")


def test_nothing_in_comments_or_after_expressions():
    ns = make_namespace("x = 'abc'")
    assert matches(ns, "y = 1  # x") == []
    assert matches(ns, "f().x") == []
    assert matches(ns, "1.") == []


# -- complete: attributes --------------------------------------------------------

def test_complete_attributes_of_modules_classes_and_instances():
    ns = make_namespace("import os", TRAPS, "class Box:\n    size = 3\nbox = Box()\n"
                        "box.inner = Box()\nbox.inner.content = 'x'")
    reply = complete(ns, "os.pa")
    assert "path" in reply["matches"] and reply["cursor_start"] == 3
    assert "join" in matches(ns, "os.path.jo")
    assert matches(ns, "box.inner.con") == ["content"]
    assert "upper" in matches(ns, "box.inner.content.up")
    assert matches(ns, "Box.si") == ["size"]
    assert "__init__" in matches(ns, "box.__in")
    assert matches(ns, "trap.pl") == ["plain"]
    assert "append" in matches(ns, "trap.plain.app")


def test_complete_numpy_attribute():
    np = pytest.importorskip("numpy")
    ns = make_namespace("import numpy as np\narr = np.zeros((2, 3))")
    assert "array" in matches(ns, "np.ar")
    assert matches(ns, "arr.T.sha") == ["shape"]
    assert np is ns["np"]


def test_completion_never_runs_properties_getattr_or_dir(in_tmp):
    ns = make_namespace(TRAPS)
    names = matches(ns, "trap.")
    assert {"prop", "method", "plain"} <= set(names)
    assert "dynamic" not in names
    assert matches(ns, "trap.pro") == ["prop"]
    assert matches(ns, "trap.prop.") == []
    assert matches(ns, "trap.missing.") == []
    inspect_(ns, "trap.prop")
    inspect_(ns, "trap", detail_level=1)
    assert_no_markers(in_tmp)


def test_completion_never_runs_module_getattr_or_metaclass_hooks(in_tmp):
    ns = make_namespace(
        "import types\nlazy = types.ModuleType('lazy')\n"
        "exec('def __getattr__(n):\\n    open(\"ran-module\", \"w\").close()\\n"
        "    raise AttributeError(n)\\nvalue = 1', lazy.__dict__)\n"
        "class Meta(type):\n    def __getattr__(cls, n):\n"
        "        open('ran-meta', 'w').close()\n        raise AttributeError(n)\n"
        "class Tricky(metaclass=Meta):\n    '''Tricky doc.'''\n"
        "    def __init__(self, a):\n        pass\n")
    assert matches(ns, "lazy.va") == ["value"]
    assert matches(ns, "Tricky.nothing.") == []
    reply = inspect_(ns, "Tricky", detail_level=1)
    assert reply["signature"] == "(a)" and reply["docstring"] == "Tricky doc."
    inspect_(ns, "lazy", detail_level=1)
    handlers()["variables"](ns, {"all": True})
    assert_no_markers(in_tmp)


# -- complete: dict keys ------------------------------------------------------------

def test_complete_dict_keys():
    ns = make_namespace("d = {'key': 1, 'kettle': 2, \"it's\": 3, 4: 5, b'raw': 6}\n"
                        "holder = type('H', (), {})()\nholder.table = d")
    reply = complete(ns, "d['ke")
    assert reply["matches"] == ["kettle", "key"]
    assert reply["cursor_start"] == 3  # the start of the key text, after the quote
    assert matches(ns, 'd["it') == ["it's"]
    assert matches(ns, "d['it") == ["it\\'s"]  # written as the literal needs it
    assert matches(ns, "holder.table[ 'ket") == ["kettle"]
    assert matches(ns, "d[b'r") == ["raw"]


def test_dict_keys_only_for_dicts():
    ns = make_namespace("items = [1, 2]\nfrom collections import OrderedDict\n"
                        "od = OrderedDict(alpha=1)")
    assert matches(ns, "items['a") == []
    assert matches(ns, "od['al") == ["alpha"]


# -- complete: modules ----------------------------------------------------------------

@pytest.fixture
def package(tmp_path, monkeypatch):
    """An importable package that nobody has imported."""
    name = "wkpkg_%d" % os.getpid()
    root = tmp_path / "lib" / name
    (root / "inner").mkdir(parents=True)
    (root / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    (root / "inner" / "__init__.py").write_text("")
    (root / "alpha.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    yield name
    assert name not in sys.modules  # completion never imports


def test_complete_module_names(package):
    ns = make_namespace("import os")
    assert "os" in matches(ns, "import o")
    assert "json" in matches(ns, "import os, js")
    assert package in matches(ns, "import " + package[:6])
    assert matches(ns, "from %s." % package) == ["alpha", "inner"]
    reply = complete(ns, "import %s.al" % package)
    assert reply["matches"] == ["alpha"]
    assert reply["cursor_start"] == len("import %s." % package)
    assert matches(ns, "from %s import " % package) == ["alpha", "inner"]
    assert matches(ns, "import os as o") == []


def test_complete_from_import_names_of_loaded_module():
    ns = make_namespace("x = 1")
    assert "join" in matches(ns, "from os.path import jo")
    assert "path" in matches(ns, "from os import pa")
    assert "dumps" in matches(ns, "from json import (loads,\n    du")


# -- complete: paths -----------------------------------------------------------------

def test_complete_paths_in_strings(in_tmp):
    (in_tmp / "data.csv").write_text("x")
    (in_tmp / "dir").mkdir()
    (in_tmp / "dir" / "file.txt").write_text("x")
    (in_tmp / ".hidden").write_text("x")
    ns = make_namespace("x = 1")
    reply = complete(ns, "open('da")
    assert reply["matches"] == ["data.csv"]
    assert reply["cursor_start"] == len("open('")
    assert matches(ns, 'open("di') == ["dir/"]
    assert matches(ns, "open('dir/f") == ["dir/file.txt"]
    assert ".hidden" not in matches(ns, "open('")
    assert matches(ns, "open('.h") == [".hidden"]
    assert matches(ns, "open('%s/da" % in_tmp) == ["%s/data.csv" % in_tmp]
    assert matches(ns, "open('nowhere/x") == []


# -- inspect -----------------------------------------------------------------------

def test_inspect_builtin():
    reply = inspect_(make_namespace("x = 1"), "len")
    assert reply["status"] == "ok" and reply["found"] is True
    assert reply["name"] == "len" and reply["type"] == "builtin_function_or_method"
    assert reply["signature"] == "(obj, /)"
    assert "number of items" in reply["docstring"]
    assert "number of items" in reply["data"]["text/plain"]
    assert "len(obj, /)" in reply["data"]["text/markdown"]
    assert "source" not in reply


def test_inspect_function_from_earlier_cell_with_source():
    ns = make_namespace("def scale(x, factor=2):\n    '''Multiply.'''\n    return x * factor\n",
                        "y = 1")
    reply = inspect_(ns, "scale", detail_level=1)
    assert reply["found"] and reply["signature"] == "(x, factor=2)"
    assert reply["docstring"] == "Multiply."
    assert reply["file"].startswith("<cell ")
    assert reply["source"].startswith("def scale(x, factor=2):")
    assert "return x * factor" in reply["data"]["text/plain"]
    assert "source" not in inspect_(ns, "scale", detail_level=0)


def test_inspect_class_from_cell_with_source():
    ns = make_namespace("class Point:\n    '''A point.'''\n    def __init__(self, x, y):\n"
                        "        self.x, self.y = x, y\n", "p = Point(1, 2)")
    reply = inspect_(ns, "Point", detail_level=1)
    assert reply["signature"] == "(x, y)" and reply["docstring"] == "A point."
    assert reply["source"].startswith("class Point:")
    instance = inspect_(ns, "p", detail_level=1)
    assert instance["type"] == "Point" and instance["docstring"] == "A point."


def test_inspect_methods():
    ns = make_namespace(TRAPS)
    reply = inspect_(ns, "str.upper")
    assert reply["found"] and reply["type"] == "method_descriptor"
    assert "uppercase" in reply["docstring"]
    bound = inspect_(ns, "trap.method", detail_level=1)
    assert bound["type"] == "method" and bound["signature"] == "(a, b=2)"
    assert bound["docstring"] == "Add things."
    assert "def method(self, a, b=2):" in bound["source"]


def test_inspect_missing_name():
    ns = make_namespace("x = 1")
    for code in ("nothing_here", "x.nope", "", "   ", "for"):
        assert inspect_(ns, code) == {"status": "ok", "found": False, "data": {},
                                      "metadata": {}}


def test_inspect_finds_callable_around_cursor():
    ns = make_namespace("import os\ndef f(a, b):\n    pass")
    assert inspect_(ns, "f(1, ")["name"] == "f"
    assert inspect_(ns, "os.path.join('a', ")["name"] == "os.path.join"
    assert inspect_(ns, "f('some text")["name"] == "f"
    assert inspect_(ns, "os.path.join", cursor_pos=5)["name"] == "os.path"
    assert inspect_(ns, "print(f)", cursor_pos=7)["name"] == "f"
    assert inspect_(ns, "x = f(a, [1, ")["name"] == "f"


def test_inspect_property_is_not_run(in_tmp):
    ns = make_namespace(TRAPS)
    reply = inspect_(ns, "trap.prop", detail_level=1)
    assert reply["found"] and reply["type"] == "property"
    assert "def prop(self):" in reply["source"]
    assert_no_markers(in_tmp)


# -- is_complete ------------------------------------------------------------------

@pytest.mark.parametrize("code, expected", [
    ("x = 1", {"status": "complete"}),
    ("", {"status": "complete"}),
    ("await something()", {"status": "complete"}),  # top-level await runs in cells
    ("def f():\n    return 1\n", {"status": "complete"}),
    ("for i in x:", {"status": "incomplete", "indent": "    "}),
    ("def f():", {"status": "incomplete", "indent": "    "}),
    ("def f():\n    x = 1", {"status": "incomplete", "indent": "    "}),
    ("class A:\n    def f(self):", {"status": "incomplete", "indent": "        "}),
    ("def f():\n    if x:\n        return 1", {"status": "incomplete", "indent": "    "}),
    ("if x:  # note\n    pass\nelse:  # other", {"status": "incomplete", "indent": "    "}),
    ("x = [1,", {"status": "incomplete", "indent": ""}),
    ("x = '''abc", {"status": "incomplete", "indent": ""}),
    ("x = 1 + \\", {"status": "incomplete", "indent": ""}),
    ("1 +* 2", {"status": "invalid"}),
    ("x = 'abc", {"status": "invalid"}),
    ("return 1", {"status": "invalid"}),
    ("break", {"status": "invalid"}),
])
def test_is_complete(code, expected):
    assert is_complete(code) == expected


def test_is_complete_emits_no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert is_complete("x is 1")["status"] == "complete"
    assert not caught


# -- variables --------------------------------------------------------------------

def test_variables_sorted_hidden_and_all():
    ns = make_namespace("import os\nb = [1, 2, 3]\na = 'text'\n_hidden = 1\nIn = []\n"
                        "exit = quit = get_ipython = Out = None\ndef f(): pass")
    listed = variables(ns)
    assert [entry["name"] for entry in listed] == ["a", "b", "f"]
    assert listed[0] == {"name": "a", "type": "str", "repr": "'text'", "len": 4}
    assert listed[1] == {"name": "b", "type": "list", "repr": "[1, 2, 3]", "len": 3}
    names = [entry["name"] for entry in variables(ns, all=True)]
    assert {"os", "_hidden", "In", "Out", "exit", "quit", "get_ipython", "__name__"} <= set(names)
    assert "__builtins__" not in names
    assert names == sorted(names)


def test_variables_repr_is_bounded():
    from wsgikernel.kernel.introspect import REPR_LENGTH
    ns = make_namespace("big = list(range(10**6))\nlong = 'x' * 10000\n"
                        "class R:\n    def __repr__(self):\n        return 'r' * 10000\n"
                        "r = R()\nloop = [1]\nloop.append(loop)\n"
                        "class Bad:\n    def __repr__(self):\n        raise ValueError('no')\n"
                        "bad = Bad()\nnested = {'a': (1,), 'b': {2}, 'c': frozenset()}")
    listed = {entry["name"]: entry for entry in variables(ns)}
    for name in ("big", "long", "r"):
        assert len(listed[name]["repr"]) <= REPR_LENGTH
        assert listed[name]["repr"].endswith("...")
    assert listed["big"]["len"] == 10**6 and listed["big"]["repr"].startswith("[0, 1, 2")
    assert listed["loop"]["repr"] == "[1, [...]]"
    assert listed["bad"]["repr"] == "<repr failed: ValueError>"
    assert listed["nested"]["repr"] == "{'a': (1,), 'b': {2}, 'c': frozenset()}"
    assert "len" not in listed["r"]


def test_variables_shape_is_read_without_properties(in_tmp):
    ns = make_namespace(TRAPS, "class Shaped:\n    def __init__(self):\n"
                               "        self.shape = (2, 3)\n"
                               "class Lazy:\n    @property\n    def shape(self):\n"
                               "        mark('ran-shape')\n        return (1,)\n"
                               "shaped, lazy = Shaped(), Lazy()")
    listed = {entry["name"]: entry for entry in variables(ns)}
    assert listed["shaped"]["len"] == [2, 3]
    assert "len" not in listed["lazy"]
    assert_no_markers(in_tmp)


def test_variables_numpy_shape():
    pytest.importorskip("numpy")
    ns = make_namespace("import numpy as np\narr = np.zeros((2, 5))")
    (entry,) = variables(ns)
    assert entry["name"] == "arr" and entry["type"] == "ndarray" and entry["len"] == [2, 5]


def test_slow_repr_does_not_hang_variables():
    from wsgikernel.kernel.variables import TIMED_OUT
    ns = make_namespace("import threading\nrelease = threading.Event()\n"
                        "class Slow:\n    def __repr__(self):\n"
                        "        release.wait(60)\n        return 'slow'\n"
                        "a_slow = Slow()\nb_fast = 'fast'")
    result = []
    thread = threading.Thread(target=lambda: result.append(variables(ns)), daemon=True)
    thread.start()
    try:
        thread.join(HANG_GUARD)
        assert result, "variables did not return"
    finally:
        ns["release"].set()
    listed = {entry["name"]: entry["repr"] for entry in result[0]}
    assert listed["a_slow"] == TIMED_OUT
    assert listed["b_fast"] == "'fast'"  # the values after the slow one still get theirs


def test_handlers_table():
    assert set(handlers()) == {"complete", "inspect", "is_complete", "variables"}


def test_inspect_dataclass_from_cell():
    ns = make_namespace("from dataclasses import dataclass\n@dataclass\nclass Config:\n"
                        "    '''Settings.'''\n    size: int = 3\n", "c = Config()")
    reply = inspect_(ns, "Config", detail_level=1)
    assert reply["source"].startswith("@dataclass\nclass Config:")
    assert reply["signature"] == "(size: int = 3) -> None"
