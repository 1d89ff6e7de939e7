"""The conventional WSGI entry module: ``application = make_app()``.

For servers that take a module path::

    uwsgi --master --die-on-term --http 127.0.0.1:8080 --http-keepalive \
          --module wsgikernel.wsgi:application    # docs/deploy.md has the whole recipe
    gunicorn wsgikernel.wsgi
    # mod_wsgi: WSGIScriptAlias /kernel /path/to/site-packages/wsgikernel/wsgi.py

Every setting comes from ``WSGIKERNEL_*`` environment variables (see
``wsgikernel.config``); the token from ``WSGIKERNEL_TOKEN``, else the shared
``<state_dir>/token`` file.  Importing this module builds the app and nothing
else: no kernel, no thread, no child process, so it is safe to import in a
pre-forking master (uWSGI without ``--lazy-apps``, gunicorn ``--preload``).
Kernel processes are started on demand, and the kernel pool lazily in each
worker on its first request.

Stopping kernels when the server stops is the server's job: see
``wsgikernel.gunicorn_conf`` (``on_exit``) and ``wsgikernel.uwsgi_hooks``
(``--hook-as-user-atexit``), and docs/deploy.md.
"""

from .app import make_app

application = make_app()
