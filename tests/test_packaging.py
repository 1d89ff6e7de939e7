"""Package-wide promises: stdlib only, a lazy top-level package, a matching OpenAPI document."""

import ast
import os
import subprocess
import sys

import pytest

from helpers import HANG_GUARD, ROOT

PACKAGE = os.path.join(ROOT, "wsgikernel")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def python_files():
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [name for name in dirs if name != "__pycache__"]
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def top_level_imports(source, filename="<source>"):
    """(line, top-level module) of every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module.split(".")[0]


def forbidden(module):
    return module != "wsgikernel" and (module == "cgi" or module not in sys.stdlib_module_names)


needs_stdlib_names = pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"),
                                        reason="sys.stdlib_module_names is new in Python 3.10")


@needs_stdlib_names
def test_the_checker_catches_third_party_and_cgi_imports():
    source = ("import os, requests.adapters\nfrom cgi import parse_header\n"
              "from . import errors\nfrom wsgikernel.errors import HTTPError\n"
              "def f():\n    import numpy as np\n")
    bad = [(line, name) for line, name in top_level_imports(source) if forbidden(name)]
    assert bad == [(1, "requests"), (2, "cgi"), (6, "numpy")]


@needs_stdlib_names
def test_the_package_imports_only_the_standard_library():
    files = list(python_files())
    assert len(files) >= 10, files
    bad = []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        for line, module in top_level_imports(source, path):
            if forbidden(module):
                bad.append("%s:%d imports %s" % (os.path.relpath(path, ROOT), line, module))
    assert not bad


def test_importing_the_package_loads_no_http_side():
    code = ("import sys, wsgikernel\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('wsgikernel'))\n"
            "assert 'wsgikernel.app' not in sys.modules and "
            "'wsgikernel.dispatch' not in sys.modules and "
            "'wsgikernel.server' not in sys.modules, loaded\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr


def test_make_app_resolves_lazily():
    import wsgikernel
    from wsgikernel.app import make_app
    assert wsgikernel.make_app is make_app
    assert "make_app" in wsgikernel.__all__
    with pytest.raises(AttributeError):
        wsgikernel.no_such_name


def test_openapi_describes_exactly_the_registered_routes(app, testapp):
    document = testapp.get("/openapi.json", status=200).json
    assert document["openapi"].startswith("3.1")
    registered = {(route.method.lower(), route.pattern) for route in app.routes}
    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item if method in HTTP_METHODS}
    assert registered - documented == set(), "registered but not described"
    assert documented - registered == set(), "described but not registered"
    assert {route.pattern for route in app.routes} == set(document["paths"])
