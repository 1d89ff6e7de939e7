"""What the control layer refuses or cannot do: one base class, identifiers, no HTTP.

The control layer (this package, ``pool.py``...) raises these; it knows nothing
of status codes, problem types or ``Retry-After``.  The HTTP layer maps each
class to the HTTP error it is answered with, in one table
(``dispatch.DOMAIN_ERRORS``), so what a client sees is decided in one place.
Each class carries what a caller needs to act on it (``env_id``, ``state``,
``limit``...) as attributes; ``str()`` is a sentence for logs.
"""


class ControlError(Exception):
    """Base of the errors the control layer raises on purpose."""


class EnvironmentNotFound(ControlError):
    def __init__(self, env_id):
        super().__init__("no environment has the id %r" % (env_id,))
        self.env_id = env_id


class EnvironmentExists(ControlError):
    def __init__(self, env_id):
        super().__init__("an environment with the id %r already exists" % (env_id,))
        self.env_id = env_id


class EnvironmentNotRunning(ControlError):
    """The env has no kernel that takes work: ``state`` is ``dead`` or ``stopped``."""

    def __init__(self, env_id, state):
        super().__init__("environment %r is %s" % (env_id, state))
        self.env_id = env_id
        self.state = state


class ExecutionNotFound(ControlError):
    def __init__(self, env_id, execution_count):
        super().__init__("environment %r has no execution %s" % (env_id, execution_count))
        self.env_id = env_id
        self.execution_count = execution_count


class ExecutionNotWaiting(ControlError):
    """Input was sent to an execution that does not wait for any (``why``: its state)."""

    def __init__(self, env_id, execution_count, why):
        super().__init__("execution %s of environment %r does not wait for input: %s" % (
            execution_count, env_id, why))
        self.env_id = env_id
        self.execution_count = execution_count
        self.why = why


class KernelUnavailable(ControlError):
    """The env's kernel cannot answer now (starting, not answering, did not start)."""

    def __init__(self, env_id, why):
        super().__init__("the kernel of environment %r is unavailable: %s" % (env_id, why))
        self.env_id = env_id
        self.why = why


class KernelQueued(KernelUnavailable):
    """The env's kernel is a batch job the scheduler has not started yet (``why`` says
    why, in the scheduler's words): an execution can be parked for it (parked.py)."""


class KernelIncompatible(ControlError):
    """The env's kernel speaks another version of the wire protocol (``why`` says which);
    a restart replaces it with one of this version."""

    def __init__(self, env_id, why):
        super().__init__("the kernel of environment %r is incompatible: %s" % (env_id, why))
        self.env_id = env_id
        self.why = why


class QueueFull(ControlError):
    """The kernel already holds ``limit`` waiting executions (``max_queue``)."""

    def __init__(self, limit):
        super().__init__("the execution queue is full (max_queue=%d)" % limit)
        self.limit = limit


class QuotaExceeded(ControlError):
    """A server-wide limit (``max_envs``) is reached."""

    def __init__(self, name, limit):
        super().__init__("the limit %s=%d is reached" % (name, limit))
        self.name = name
        self.limit = limit


class InvalidEnvId(ControlError):
    """``env_id`` does not follow the rule of ``envid.py``; ``why`` states the rule."""

    def __init__(self, env_id, why):
        super().__init__("invalid environment id %r: %s" % (env_id, why))
        self.env_id = env_id
        self.why = why


class InvalidSandbox(ControlError):
    """A per-env sandbox setting ``name`` the server does not allow (``why``): looser than
    the server's, or network where the server gives none."""

    def __init__(self, name, why):
        super().__init__("invalid sandbox setting %s: %s" % (name, why))
        self.name = name
        self.why = why


class InvalidResources(ControlError):
    """The job's ``resources`` cannot be had (``why``: sbatch's reason, or no scheduler)."""

    def __init__(self, why):
        super().__init__("invalid resources: %s" % why)
        self.name = "resources"
        self.why = why


class SandboxUnavailable(ControlError):
    """A bwrap sandbox cannot run on this host (``why``: bubblewrap missing, namespaces
    refused...); envs without a sandbox still can."""

    def __init__(self, why):
        super().__init__("no sandbox can be created: %s" % why)
        self.why = why


class InvalidLimit(ControlError):
    """A per-env limit ``name`` the server does not allow (``why``)."""

    def __init__(self, name, why):
        super().__init__("invalid limit %s: %s" % (name, why))
        self.name = name
        self.why = why


class CheckpointNotFound(ControlError):
    def __init__(self, env_id, name):
        super().__init__("environment %r has no checkpoint %r" % (env_id, name))
        self.env_id = env_id
        self.name = name


class CheckpointConflict(ControlError):
    """A checkpoint, restore or undo the env cannot do now; ``why`` says what to do
    (a cell is running, threads would be lost, the name is taken, nothing to undo)."""

    def __init__(self, env_id, why):
        super().__init__("environment %r: %s" % (env_id, why))
        self.env_id = env_id
        self.why = why
