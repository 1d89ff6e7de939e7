"""wsgikernel: run Python code in named, persistent environments over HTTP + JSON.

Public API (loaded lazily, so the kernel process, which imports this package
first, never loads the HTTP side):

- ``make_app(**config)``: the WSGI application (``wsgikernel.app``)
- ``Client``: the HTTP client for users (``wsgikernel.client``)

Security: the service executes arbitrary code as the user running it.  It
binds to 127.0.0.1 and requires a token unless told otherwise.
"""

__version__ = "0.1.0"
__all__ = ["make_app", "Client", "__version__"]

_LAZY = {"make_app": "wsgikernel.app", "Client": "wsgikernel.client"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'wsgikernel' has no attribute %r" % name)
    import importlib
    return getattr(importlib.import_module(module), name)
