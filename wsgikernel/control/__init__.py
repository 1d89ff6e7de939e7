"""The control layer: environments and their kernels, below HTTP and above the wire.

``environments.EnvironmentManager`` is its one entry point (``wsgikernel.manager``
re-exports it); the modules here are the parts it hands calls to (see its
docstring).  Nothing here imports the HTTP layer: failures are the domain
errors of ``errors.py``, which ``dispatch.py`` maps to problem+json, and the
env-id rule is ``envid.py``.  Nothing is loaded eagerly.
"""
