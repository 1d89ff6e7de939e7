"""Stop every kernel of the state dir when the server stops: the uWSGI recipe.

uWSGI's master never runs Python at exit (``uwsgi.atexit`` and the ``atexit``
module run in the workers only, and a worker must not stop the kernels: workers
are recycled while the service goes on).  What the master does run at exit is
an *as-user-atexit hook*, so the recipe is a command::

    uwsgi --master --die-on-term --need-app --http 127.0.0.1:8080 --http-keepalive \\
          --http-timeout 120 --processes 2 --threads 8 \\
          --module wsgikernel.wsgi:application \\
          --hook-as-user-atexit "exec:/path/to/venv/bin/python -m wsgikernel.uwsgi_hooks" \\
          --log-format '%(addr) [%(ltime)] "%(method) %(var.PATH_INFO) %(proto)" %(status) %(size) pid=%(pid)'

(``hook-as-user-atexit = exec:...`` in an ini file is the same; docs/deploy.md has
the whole recipe, ini and command line, each run by a test.)  ``--http-keepalive``
keeps HTTP/1.1 connections open between requests (without it the router closes
them though it answered as keep-alive), and the ``--log-format`` keeps query
strings, so ``?token=``, out of the access log.  The hook command runs in
the master after the workers are gone, with the master's environment, so it
finds the same ``WSGIKERNEL_STATE_DIR``; it stops every kernel (pooled ones
too) and leaves the environments listed as ``stopped`` with their history, as a
clean shutdown of ``scripts/serve.py`` does; ``restart`` revives one.

uWSGI runs these hooks before a full reload (SIGHUP, ``--touch-reload``) as
well, so a full reload stops the kernels too.  To load new code while kernels
keep running, reload the workers only (``--lazy-apps`` with
``--touch-workers-reload`` or ``--touch-chain-reload``).

``stop_all_kernels()`` is also what ``wsgikernel.gunicorn_conf.on_exit`` calls.
"""

import sys


def stop_all_kernels(**config):
    """Stop every kernel of the state dir (from ``config`` or WSGIKERNEL_*).

    Returns (how many environments had a running kernel, the state dir).
    """
    from .config import load_config
    from .manager import ALIVE_STATES, EnvironmentManager
    from .store import read_record
    from .statedir import default_state_dir

    settings = load_config(config)
    settings.state_dir = settings.state_dir or default_state_dir()
    manager = EnvironmentManager(settings)
    running = 0
    for env_id in manager.ids():
        record = read_record(manager.env_dir(env_id))
        if record and record.get("state") in ALIVE_STATES:
            running += 1
    manager.stop_all()
    return running, settings.state_dir


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print("usage: python -m wsgikernel.uwsgi_hooks   (settings from WSGIKERNEL_* variables)\n"
              "stops every kernel of the state dir; the envs stay listed as stopped",
              file=sys.stderr)
        return 2
    try:
        running, state_dir = stop_all_kernels()
    except Exception as exc:  # a hook must say what went wrong, not dump a traceback
        print("wsgikernel: could not stop the kernels: %s" % exc, file=sys.stderr)
        return 1
    print("wsgikernel: stopped %d kernel(s) of %s" % (running, state_dir), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
