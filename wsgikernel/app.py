"""make_app(**config): the WSGI application every entry point uses.

Builds the configuration (keywords, then ``WSGIKERNEL_*`` variables), the
guard, the environment manager and the dispatcher, and registers every route
from the one table below.  It starts no thread and no process, so it is safe to
call in a pre-forking server's master (gunicorn ``--preload``).
"""

import os

from . import api, compat, ui
from .auth import Guard, resolve_token
from .config import load_config
from .dispatch import PathDispatcher, endpoint
from .manager import EnvironmentManager
from .statedir import default_state_dir, ensure_private_dir

# (method, pattern, handler name in api/compat/ui, public). The single route table.
ROUTES = (
    ("GET", "/", "service_info", False),
    ("GET", "/healthz", "health", True),
    ("GET", "/openapi.json", "openapi_document", False),
    ("GET", "/ui", "ui_page", True),
    ("GET", "/ui/{name}", "ui_file", True),
    ("GET", "/envs", "list_environments", False),
    ("POST", "/envs", "create_environment", False),
    ("GET", "/envs/{id}", "get_environment", False),
    ("PUT", "/envs/{id}", "put_environment", False),
    ("DELETE", "/envs/{id}", "delete_environment", False),
    ("POST", "/envs/{id}/restart", "restart_environment", False),
    ("POST", "/envs/{id}/interrupt", "interrupt_environment", False),
    ("GET", "/envs/{id}/late_output", "late_output", False),
    ("POST", "/envs/{id}/execute", "execute_code", False),
    ("GET", "/envs/{id}/executions", "list_executions", False),
    ("GET", "/envs/{id}/executions/{n}", "get_execution", False),
    ("POST", "/envs/{id}/executions/{n}/cancel", "cancel_execution", False),
    ("GET", "/envs/{id}/notebook", "export_notebook", False),
    ("POST", "/envs/{id}/complete", "complete_code", False),
    ("POST", "/envs/{id}/inspect", "inspect_code", False),
    ("POST", "/envs/{id}/is_complete", "is_complete_code", False),
    ("GET", "/envs/{id}/variables", "list_variables", False),
    # The original tutorial's API (see compat.py): same routes, same bodies.
    ("POST", "/env/create", "compat_create", False),
    ("POST", "/env/delete", "compat_delete", False),
    ("POST", "/env/get", "compat_get", False),
    ("POST", "/", "compat_execute", False),
)


class Application(PathDispatcher):
    """The dispatcher plus what entry points need: config, token, manager, close()."""

    def __init__(self, config, token, manager):
        guard = Guard(token, config.allowed_hosts, config.allowed_origins)
        super().__init__(max_body=config.max_body, guard=guard)
        self.config = config
        self.token = token
        self.manager = manager
        self._warmed_in = None

    def __call__(self, environ, start_response):
        if self._warmed_in != os.getpid():  # lazily, per process: fork-safe
            self.warm()
        return super().__call__(environ, start_response)

    def warm(self):
        """Start filling the kernel pool (a background thread of this process)."""
        self._warmed_in = os.getpid()
        self.manager.pool.refill_soon()

    def close(self):
        """Stop every kernel of the state dir; their envs stay listed as stopped."""
        self.manager.stop_all()


def make_app(**config):
    """Build the WSGI app; see docs/configuration in the README for the keys."""
    config = load_config(config)
    config.state_dir = config.state_dir or default_state_dir()
    ensure_private_dir(config.state_dir)
    token = resolve_token(config.token, config.state_dir)
    app = Application(config, token, EnvironmentManager(config))
    owners = (api.Api(app), compat.CompatApi(app), ui.UiApi(app))
    for method, pattern, name, public in ROUTES:
        handler = next(getattr(o, name) for o in owners if hasattr(o, name))
        app.register(method, pattern, endpoint(handler), public=public)
    return app
