"""A gunicorn configuration module for wsgikernel.

Usage (every wsgikernel setting from ``WSGIKERNEL_*`` environment variables)::

    gunicorn -c python:wsgikernel.gunicorn_conf 'wsgikernel.app:make_app()'

Command-line flags override the values below (``-b 127.0.0.1:9000 -w 3``).
What it adds to gunicorn's defaults:

- ``on_exit``: when the master stops (SIGTERM, SIGINT, SIGQUIT), every kernel
  of the state dir is stopped and its environment stays listed as ``stopped``
  with its history, as a clean shutdown of ``scripts/serve.py`` does.  A
  worker exiting (``max_requests``, a crash, a timeout) stops nothing: kernels
  outlive the worker that started them.  An old master handing over to a new
  one (USR2 upgrade) stops nothing either.
- threads: a request may wait on a kernel for up to ``default_wait`` (25 s) or
  a long-poll ``wait``, and an NDJSON stream lasts as long as its cell; with
  threads (the gthread worker) such a request holds one thread, not a whole
  worker.  ``workers * threads`` is how many requests can wait at once.
- ``timeout = 30`` stays above ``default_wait`` (25 s), so a long cell answers
  202 + Location before a sync worker would be killed;  ``graceful_timeout``
  lets in-flight long-polls end on a stop.
- an access log without query strings or Referer (``?token=`` never lands in a
  log file); none with ``WSGIKERNEL_LOG_FORMAT=json``, where the app writes its own.

Safe with ``--preload``: building the app starts no thread and no process.
"""


import os

wsgi_app = "wsgikernel.app:make_app()"  # used when no app is named on the command line
bind = "127.0.0.1:8080"
workers = 2
threads = 8
worker_class = "gthread"
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# %(U)s is the path without the query string: ?token= stays out of the log, and so
# does the Referer (the /ui page's address may carry the token).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss pid=%(p)s'
if os.environ.get("WSGIKERNEL_LOG_FORMAT", "").strip().lower() == "json":
    accesslog = None  # the app writes one JSON line per request itself (docs/operations.md)


def on_exit(server):
    """Stop every kernel of the state dir (the master is exiting; the workers are gone)."""
    if getattr(server, "reexec_pid", 0) or getattr(server, "master_pid", 0):
        # USR2 upgrade: another master serves (or may still serve) this state dir.
        server.log.info("wsgikernel: another master serves this state dir; kernels left running")
        return
    from wsgikernel.uwsgi_hooks import stop_all_kernels
    try:
        running, state_dir = stop_all_kernels()
    except Exception as exc:  # report, never keep the master from exiting
        server.log.error("wsgikernel: could not stop the kernels: %s", exc)
        return
    server.log.info("wsgikernel: stopped %d kernel(s) of %s", running, state_dir)
