"""Run code around the import of one module, without importing it: a finder on
``sys.meta_path`` (figures.py: matplotlib.pyplot; displaying.py: IPython's display).

The finder asks the finders after it for the module's spec, as the import system
would, and wraps the spec's loader: ``before(module)`` runs before the module's code,
``after(module)`` once it has run.  A module imported before the hook was installed
is not seen here: ``install`` runs ``after`` on it at once.
"""

import importlib.abc
import sys


class ImportHook(importlib.abc.MetaPathFinder):
    def __init__(self, name, before=None, after=None):
        self.name = name
        self.before = before
        self.after = after

    def install(self):
        loaded = sys.modules.get(self.name)
        if loaded is not None and self.after is not None:
            self.after(loaded)
        sys.meta_path.insert(0, self)

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = HookedLoader(spec.loader, self)
                return spec
        return None


class HookedLoader(importlib.abc.Loader):
    def __init__(self, loader, hook):
        self.loader = loader
        self.hook = hook

    def __getattr__(self, name):  # resources, get_source...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.hook.before is not None:
            self.hook.before(module)
        self.loader.exec_module(module)
        if self.hook.after is not None:
            self.hook.after(module)
