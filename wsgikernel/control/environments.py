"""EnvironmentManager: the one entry point of the control layer.

The HTTP layer (api.py, compat.py), the pool and the shutdown hooks
(uwsgi_hooks.py, gunicorn_conf.py) call this class only; it hands each call to
the part that holds it:

- ``registry.EnvRegistry``: env directories, ids, env.json (cached), history;
- ``link.KernelLink``: exchanges with a kernel, and what a silent one means;
- ``envobject.EnvDescriber``: the env object (env.json + live status);
- ``lifecycle.Lifecycle``: create, launch, restart, stop, delete;
- ``executions.Executions`` (``cells``): execute, follow, find, cancel, interrupt;
- ``introspection.Introspection``: complete/inspect/..., late output;
- ``checkpoints.Checkpoints``: take, list, drop, restore, undo.

It keeps nothing in memory that another worker process would need (an
environment is its directory, its kernel is found through env.json), so any
number of workers, and a server restarted after a crash, serve the same
environments.  Failures are the domain errors of ``control/errors.py``.
"""

from ..pool import KernelPool
from .checkpoints import Checkpoints
from .envobject import EnvDescriber
from .executions import Executions
from .introspection import Introspection
from .lifecycle import Lifecycle
from .link import STATUS_TIMEOUT, KernelLink
from .registry import EnvRegistry


class EnvironmentManager:
    def __init__(self, config):
        self.config = config
        self.registry = EnvRegistry(config)
        self.counts = self.registry.counts
        self.envs_dir = self.registry.envs_dir
        self.link = KernelLink(self.registry)
        self.describer = EnvDescriber(self.registry, self.link)
        self.pool = KernelPool(self)
        self.lifecycle = Lifecycle(config, self.registry, self.link, self.describer, self.pool)
        self.cells = Executions(self.registry, self.link, self.describer)
        self.introspection = Introspection(self.registry, self.link)
        self.checkpoints = Checkpoints(config, self.registry, self.link, self.describer)

    @property
    def records(self):
        """The registry's cache of parsed env.json files (env id -> (stat key, record))."""
        return self.registry.records

    @property
    def connections(self):
        return self.link.connections

    # -- the registry ------------------------------------------------------------

    def env_dir(self, env_id):
        return self.registry.env_dir(env_id)

    def ids(self):
        return self.registry.ids()

    def count(self):
        return self.registry.count()

    def readiness(self):
        """{check: "ok" or why not}: the state dir takes writes, the pool has started."""
        return {"state_dir": self.registry.writable(), "pool": self.pool.readiness()}

    def read(self, env_id):
        return self.registry.read(env_id)

    def history(self, env_id):
        return self.registry.history(env_id)

    # -- talking to a kernel -------------------------------------------------------

    def call(self, record, kind, body=None, timeout=STATUS_TIMEOUT):
        return self.link.call(record, kind, body, timeout)

    # -- environments --------------------------------------------------------------

    def describe(self, env_id, touch=True):
        return self.describer.describe(env_id, touch)

    def list(self):
        return self.describer.list()

    def create(self, env_id=None, limits=None, exist_ok=False, sandbox=None,
               sandbox_network=None, resources=None, auto_checkpoints=None):
        return self.lifecycle.create(env_id, limits, exist_ok, sandbox, sandbox_network,
                                     resources, auto_checkpoints)

    def ensure_running(self, env_id):
        return self.lifecycle.ensure_running(env_id)

    def kernel_settings(self):
        return self.lifecycle.kernel_settings()

    def launch(self, env_dir, record):
        return self.lifecycle.launch(env_dir, record)

    def restart(self, env_id):
        return self.lifecycle.restart(env_id)

    def delete(self, env_id):
        return self.lifecycle.delete(env_id)

    def shutdown_kernel(self, record, state="stopped", reason="shutdown"):
        return self.lifecycle.shutdown_kernel(record, state, reason)

    def stop_all(self):
        return self.lifecycle.stop_all()

    # -- executions ----------------------------------------------------------------

    def execute(self, env_id, request, wait):
        return self.cells.execute(env_id, request, wait)

    def execution(self, env_id, n, wait):
        return self.cells.execution(env_id, n, wait)

    def executions(self, env_id, since, limit):
        return self.cells.executions(env_id, since, limit)

    def cancel(self, env_id, n):
        return self.cells.cancel(env_id, n)

    def answer_input(self, env_id, n, value):
        return self.cells.answer_input(env_id, n, value)

    def interrupt(self, env_id):
        return self.cells.interrupt(env_id)

    def open_stream(self, env_id, kind, body, heartbeat):
        return self.cells.open_stream(env_id, kind, body, heartbeat)

    # -- introspection -------------------------------------------------------------

    def introspect(self, env_id, kind, body):
        return self.introspection.introspect(env_id, kind, body)

    def late_output(self, env_id):
        return self.introspection.late_output(env_id)

    # -- checkpoints ---------------------------------------------------------------

    def take_checkpoint(self, env_id, name, force):
        return self.checkpoints.take(env_id, name, force)

    def list_checkpoints(self, env_id):
        return self.checkpoints.listing(env_id)

    def drop_checkpoint(self, env_id, name):
        return self.checkpoints.drop(env_id, name)

    def restore_checkpoint(self, env_id, name=None, undo=False):
        return self.checkpoints.restore(env_id, name, undo)

    def fork(self, env_id, new_id=None, force=False, wait=0.0):
        return self.checkpoints.fork(env_id, new_id, force, wait)
