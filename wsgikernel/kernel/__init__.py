"""Code that runs inside a kernel process; imports nothing from the HTTP side.

- ``__main__``: entry point (detaches, then runs the supervisor)
- ``supervisor``: the per-environment process web workers talk to
- ``executor``: the forked user-code process
- ``execute`` / ``display`` / ``capture``: cell semantics, rich output, I/O
- ``introspect``: complete, inspect, is_complete, variables (``completion``,
  ``scanning`` and ``variables`` hold the pieces)
"""
