"""make_app(**config): the WSGI application every entry point uses.

Builds the configuration (keywords, then ``WSGIKERNEL_*`` variables), the
guard, the environment manager and the dispatcher, and registers every route
of the one route table (routes.py): each handler is wrapped so that it runs
with its route's declared parameters validated, and the dispatcher's route
keeps the declaration (``route.operation``) for the OpenAPI document.  It starts
no thread and no process, so it is safe to call in a pre-forking server's
master (gunicorn ``--preload``).
"""

import os

from . import api, compat, ui
from .auth import Guard, resolve_token
from .config import load_config
from .dispatch import PathDispatcher, endpoint
from .manager import EnvironmentManager
from .mcp.transport import McpEndpoint
from .routes import ROUTES
from .statedir import default_state_dir, ensure_private_dir
from .telemetry import Telemetry, configure_logging


class Application(PathDispatcher):
    """The dispatcher plus what entry points need: config, token, manager, close()."""

    def __init__(self, config, token, manager):
        guard = Guard(token, config.allowed_hosts, config.allowed_origins)
        super().__init__(max_body=config.max_body, guard=guard)
        self.config = config
        self.token = token
        self.manager = manager
        self.telemetry = Telemetry(manager.counts, config.log_format, config.metrics)
        self._warmed_in = None

    def __call__(self, environ, start_response):
        if self._warmed_in != os.getpid():  # lazily, per process: fork-safe
            self.warm()
        return self.telemetry.wrap(super().__call__, environ, start_response)

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
    configure_logging(config.log_format)
    app = Application(config, token, EnvironmentManager(config))
    app.mcp = McpEndpoint(app) if config.mcp else None  # checks mcp_tools now, at start
    owners = (api.Api(app), compat.CompatApi(app), ui.UiApi(app))
    for operation in ROUTES:
        operation = operation.bind(config)
        handler = next(getattr(o, operation.name) for o in owners if hasattr(o, operation.name))
        route = app.register(operation.method, operation.pattern,
                             endpoint(operation.wrap(handler)), public=operation.public)
        route.operation = operation
        route.raw_body = operation.raw_body
    return app
