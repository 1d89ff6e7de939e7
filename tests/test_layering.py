"""The layers of docs/architecture.md, checked from the source: who may import whom.

kernel  -> wire (the wire package, jsonpolicy, store, parked) and the standard library only
           (a kernel process never loads the control or HTTP side)
control -> never the HTTP layer (domain errors below HTTP, mapped to HTTP at the boundary)
and no import cycles between the package's modules.
"""

import ast
import os

from helpers import ROOT

PACKAGE = os.path.join(ROOT, "wsgikernel")
WIRE = {"wire", "wire.framing", "wire.envelope", "wire.address", "wire.auth",
        "wire.connection", "jsonpolicy", "store", "parked"}
CONTROL = {"manager", "pool", "store", "statedir", "jsonpolicy", "config", "control",
           "control.environments", "control.registry", "control.link", "control.envobject",
           "control.lifecycle", "control.executions", "control.introspection",
           "control.parking", "control.checkpoints",
           "control.errors", "control.envid", "provisioning", "provisioning.base",
           "provisioning.local", "provisioning.launcher", "provisioning.processes",
           "provisioning.forkserver", "provisioning.sandbox",
           "provisioning.slurm"} | WIRE
HTTP = {"dispatch", "errors", "params", "auth", "app", "api", "compat", "openapi", "schemas",
        "ui", "routes", "converters", "patterns", "server", "httpserver", "httpwire",
        "httpthreads", "wsgi"}


def module_imports():
    """{module: {imported wsgikernel module, ...}} for every module of the package,
    imports inside functions included (they load the module just the same)."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
            module = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
            package = module.split(".")[:-1] if not rel.endswith("__init__") else \
                module.split(".")
            targets = set()
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package[:len(package) - node.level + 1]
                        parts = base + (node.module.split(".") if node.module else [])
                        if node.module:
                            targets.add(".".join(parts))
                        else:
                            targets.update(".".join(parts + [a.name]) for a in node.names)
                    elif node.module and node.module.startswith("wsgikernel"):
                        targets.add(node.module[len("wsgikernel."):] or "__init__")
                elif isinstance(node, ast.Import):
                    targets.update(a.name[len("wsgikernel."):] for a in node.names
                                   if a.name.startswith("wsgikernel."))
            found[module] = {t for t in targets if t and t != module}
    return found


def test_kernel_code_imports_only_the_wire_layer():
    for module, targets in module_imports().items():
        if module.startswith("kernel"):
            outside = {t for t in targets if not t.startswith("kernel") and t not in WIRE}
            assert not outside, (module, outside)


def test_the_control_layer_never_imports_the_http_layer():
    for module, targets in module_imports().items():
        if module in CONTROL:
            assert not targets & HTTP, (module, targets & HTTP)


def test_every_module_of_the_control_package_is_checked():
    found = {module for module in module_imports()
             if module.split(".")[0] in ("control", "provisioning", "wire")}
    assert found and found <= CONTROL, found - CONTROL


def test_the_wire_layer_imports_nothing_above_it():
    for module, targets in module_imports().items():
        if module in WIRE:
            assert targets <= WIRE, (module, targets - WIRE)


def test_no_import_cycles_at_module_level():
    graph = module_imports()
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in seen or node not in graph:
            return
        stack.append(node)
        for target in sorted(graph[node]):
            visit(target)
        stack.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)
