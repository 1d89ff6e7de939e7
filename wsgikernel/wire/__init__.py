"""The wire layer: how web workers and kernels talk, on this host or another.

- ``framing``: length-prefixed JSON frames (under ``jsonpolicy``);
- ``envelope``: every message is ``{"type", "id"?, "parent"?, "body"}``, the
  version is announced by the kernel's ``hello`` and checked at connect;
- ``address``: ``unix:PATH`` and ``tcp:HOST:PORT``;
- ``auth``: the HMAC-SHA256 challenge a TCP connection must pass (per-kernel
  key, 0600 in the env directory);
- ``connection``: the worker-side connection and its pool, timeouts as
  exceptions.

Kernel processes import this package (and the standard library) only: nothing
here may import the control or HTTP layers.
"""
