"""Configuration: one table of settings shared by make_app(), the environment and the CLI.

Each setting is taken from the keyword given to ``make_app()``, else from
``WSGIKERNEL_<KEY>``, else its default.  Values given as strings (environment
variables, command-line flags) go through the setting's parser, so
``WSGIKERNEL_MAX_BODY=10MiB`` and ``make_app(max_body=10485760)`` mean the same.
``token`` is resolved separately (``auth.resolve_token``) because "not given"
and "given as None" mean different things there.
"""

import os
import re

ENV_PREFIX = "WSGIKERNEL_"
UNSET = object()  # distinguishes "not passed" from None (which can mean "off")


def size(value):
    """Bytes: 1048576, '1MiB', '512M', '1.5GB'; 'none'/'' means no limit."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("", "none", "off"):
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", text, re.IGNORECASE)
    if not found:
        raise ValueError("expected a size in bytes such as 1048576, 512MiB or 2G, got %r" % text)
    number, prefix, _ = found.groups()
    factor = 1024 ** ("kmgt".index(prefix.lower()) + 1) if prefix else 1  # K, M, G are binary
    return int(float(number) * factor)


def seconds(value):
    """A number of seconds, or None for 'none'/'off'/''."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    text = str(value).strip().lower()
    if text in ("", "none", "off"):
        return None
    number = float(text)
    if not number >= 0:
        raise ValueError("expected a non-negative number of seconds, got %r" % value)
    return number


def count(value):
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("none", "off"):
        return None
    number = int(text)
    if number < 0:
        raise ValueError("expected a non-negative whole number, got %r" % value)
    return number


def names(value):
    """A comma-separated list (or a list) of non-empty names."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(item.strip() for item in value if item and item.strip())


def path(value):
    return None if value in (None, "") else os.path.abspath(os.path.expanduser(str(value)))


def binds(value):
    """Extra sandbox mounts: a comma-separated list (or a list) of ``SRC`` or ``SRC:DEST``,
    both absolute; [[src, dest]] with dest = src where none is given."""
    found = []
    for item in names(value):
        src, _, dest = item.partition(":")
        src, dest = src.strip(), (dest.strip() or src.strip())
        for part in (src, dest):
            if not os.path.isabs(part) or "\0" in part:
                raise ValueError("expected absolute paths such as /data or /data:/mnt/data, "
                                 "got %r" % item)
        found.append([os.path.normpath(src), os.path.normpath(dest)])
    return tuple(found)


def arguments(value):
    """Command-line arguments: a list, or one string split as a shell would."""
    if value is None:
        return ()
    if isinstance(value, str):
        import shlex
        return tuple(shlex.split(value))
    return tuple(str(item) for item in value)


def flag(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def choice(*allowed):
    """A parser accepting one of ``allowed`` (case-insensitive)."""
    def parse(value):
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValueError("expected one of %s, got %r" % (", ".join(allowed), value))
        return text
    parse.choices = allowed
    return parse


class Setting:
    def __init__(self, key, parse, default, help):
        self.key, self.parse, self.default, self.help = key, parse, default, help

    @property
    def env_var(self):
        return ENV_PREFIX + self.key.upper()

    @property
    def flag(self):
        return "--" + self.key.replace("_", "-")


MiB = 1024 * 1024

SETTINGS = (
    Setting("state_dir", path, None, "where environments live (default: "
            "$WSGIKERNEL_STATE_DIR, $XDG_STATE_HOME/wsgikernel, ~/.local/state/wsgikernel)"),
    Setting("allowed_hosts", names, (), "Host values accepted when auth is off "
            "(default: loopback names and the bind host)"),
    Setting("allowed_origins", names, (), "browser origins allowed to call the API (CORS)"),
    Setting("max_body", size, 10 * MiB, "larger request bodies get 413"),
    Setting("max_envs", count, 64, "more environments get 429"),
    Setting("max_queue", count, 100, "more queued executions per environment get 429"),
    Setting("default_wait", seconds, 25.0, "seconds execute waits before answering 202"),
    Setting("default_timeout", seconds, None, "per-execution timeout in seconds"),
    Setting("max_timeout", seconds, None, "largest timeout a request may ask for"),
    Setting("kill_grace", seconds, 5.0, "seconds after SIGINT/SIGTERM before SIGKILL"),
    Setting("output_cap", size, MiB, "bytes of output kept per execution"),
    Setting("history_limit", count, 1000, "execution records kept per environment"),
    Setting("input_timeout", seconds, 300.0, "seconds an execution sent with allow_stdin "
            "waits for an answer to input() before it raises EOFError"),
    Setting("inline_figures", flag, True, "show matplotlib's figures in the cell as "
            "images (an execution's figure_format: png or svg), as Jupyter's inline "
            "backend does"),
    Setting("magics", flag, True, "shell escapes (!cmd) and magics (%timeit, %%bash...) "
            "in cells that are not Python otherwise; off: plain Python only"),
    Setting("auto_checkpoints", count, 0, "keep a checkpoint of the state before each of "
            "the last N cells, for POST /envs/{id}/undo (0: none)"),
    Setting("max_checkpoints", count, 8, "checkpoints kept per environment, automatic "
            "ones included; the oldest go first"),
    Setting("max_server_checkpoints", count, 64, "checkpoints kept by all environments "
            "together (each a parked process); past it the oldest goes, whichever env holds "
            "it (0 or none: no bound but each env's)"),
    Setting("mcp", flag, True, "serve the Model Context Protocol at /mcp (Streamable "
            "HTTP, the same token): tools for AI agents, docs/mcp.md"),
    Setting("mcp_tools", names, (), "the MCP tools offered (default: all; e.g. "
            "list_environments,get_execution,list_variables for read-only agents)"),
    Setting("log_format", choice("plain", "json"), "plain", "plain: the server's access "
            "log as today; json: one JSON object per request and per kernel lifecycle "
            "event on stderr, the kernels' log lines too (docs/operations.md)"),
    Setting("metrics", flag, True, "count requests and executions for GET /metrics "
            "(false: nothing is counted and /metrics is 404)"),
    Setting("metrics_public", flag, False, "serve /metrics without the token (to a "
            "Prometheus that cannot send one; it shows counts, never code or ids)"),
    Setting("idle_timeout", seconds, None, "a kernel idle this long exits (env stopped)"),
    Setting("pool_size", count, 2, "pre-started kernels"),
    Setting("preload", names, (), "modules imported in pre-started kernels"),
    Setting("kernel_forkserver", flag, True, "start kernels by forking a warm interpreter "
            "(one per state dir) rather than starting a new python each time"),
    Setting("kernel_huge_pages", flag, True, "ask glibc (2.35+) to back kernels' large "
            "allocations with transparent huge pages: a fork or checkpoint of an env "
            "holding GiBs then copies 512 times fewer page-table entries"),
    Setting("kernel_transport", choice("unix", "tcp"), "unix", "how web workers reach "
            "kernels: unix (a socket file) or tcp (127.0.0.1, HMAC-authenticated: the "
            "transport of kernels on other hosts)"),
    Setting("sandbox", choice("none", "bwrap"), "none", "where user code runs: none (as "
            "the server's user, with its files and network) or bwrap (bubblewrap: its own "
            "work dir, no network, no view of the server or other envs); per env it may "
            "only be tightened"),
    Setting("sandbox_network", choice("off", "on", "per-env"), "off", "network inside "
            "bwrap sandboxes: off, on, or per-env (a create may ask sandbox_network: true)"),
    Setting("sandbox_ro_binds", binds, (), "extra read-only paths inside sandboxes "
            "(SRC or SRC:DEST, comma-separated), e.g. datasets"),
    Setting("sandbox_rw_binds", binds, (), "extra read-write paths inside sandboxes "
            "(SRC or SRC:DEST, comma-separated), e.g. a model cache"),
    Setting("sandbox_bwrap", str, "bwrap", "the bubblewrap program (a path, or a name "
            "looked up on PATH)"),
    Setting("launcher", choice("local", "slurm"), "local", "where kernels run: local "
            "(this host) or slurm (a batch job each, on a node the scheduler picks; the "
            "state dir must be shared with the nodes)"),
    Setting("slurm_args", arguments, (), "extra sbatch options for every kernel's job, "
            "e.g. '--account=lab --qos=normal'"),
    # memory_limit, cpu_limit, file_size_limit, open_files_limit: from LIMITS below.
)
MIN_MEMORY_LIMIT = 256 * MiB
RLIMIT_MAX = 2 ** 63 - 1  # the largest value setrlimit() accepts


class Limit:
    """One resource limit of the user-code process, declared once.

    The server's setting (``--memory-limit``, ``WSGIKERNEL_MEMORY_LIMIT``), the
    per-env parameter of ``POST /envs`` and ``PUT /envs/{id}`` (validated and
    published in OpenAPI from this entry), the CLI's ``create --memory-limit`` and
    the rlimit the kernel sets all come from here.
    """

    def __init__(self, key, parse, minimum, rlimit, least, help, soft_only=False):
        self.key, self.parse, self.minimum, self.rlimit = key, parse, minimum, rlimit
        self.soft_only = soft_only  # the hard limit stays: SIGXCPU first, SIGKILL later
        self.maximum = RLIMIT_MAX
        self.json_type = "number" if parse is seconds else "integer"
        self.least = least  # the minimum, as error messages say it
        self.help = help

    @property
    def flag(self):
        return "--" + self.key.replace("_", "-")

    def check(self, value):
        """``value`` if it is a usable value (None: no limit), else ValueError."""
        if value is None:
            return None
        if value < self.minimum:
            raise ValueError("must be at least %s, or none for no limit" % self.least)
        if value > self.maximum:
            raise ValueError("must be at most %d" % self.maximum)
        return value

    def read(self, text):
        """Parse then check (the CLI's type for the flag)."""
        return self.check(self.parse(text))


# A limit is a positive number: setrlimit(-1) would *remove* the limit (RLIM_INFINITY)
# and 0 makes the kernel unusable.  RLIMIT_CPU counts whole seconds.
LIMITS = (
    Limit("memory_limit", size, MIN_MEMORY_LIMIT, "RLIMIT_AS", "256MiB (the interpreter needs it)",
          "address space of the user-code process in bytes, e.g. 512MiB (at least 256MiB)"),
    Limit("cpu_limit", seconds, 1, "RLIMIT_CPU", "1 second",
          "CPU seconds the user-code process may use over the kernel's lifetime",
          soft_only=True),
    Limit("file_size_limit", size, 1, "RLIMIT_FSIZE", "1 byte",
          "largest file the user-code process may write, in bytes, e.g. 1GiB"),
    Limit("open_files_limit", count, 1, "RLIMIT_NOFILE", "1",
          "file descriptors the user-code process may hold open"),
)
LIMIT_BY_KEY = {limit.key: limit for limit in LIMITS}
LIMIT_KEYS = tuple(limit.key for limit in LIMITS)
LIMIT_MINIMUM = {limit.key: limit.minimum for limit in LIMITS}
LIMIT_UNITS = {limit.key: limit.least for limit in LIMITS}
SETTINGS += tuple(Setting(limit.key, limit.parse, None, limit.help) for limit in LIMITS)
BY_KEY = {setting.key: setting for setting in SETTINGS}


def rlimits(limits):
    """What the kernel sets for ``limits`` ({key: value}): [[RLIMIT_NAME, value, soft_only]],
    so the kernel applies them without a table of its own."""
    return [[limit.rlimit, int(limits[limit.key]), limit.soft_only] for limit in LIMITS
            if (limits or {}).get(limit.key) is not None]


def check_limit(key, value):
    """``value`` if usable for the limit ``key`` (None: no limit), else ValueError."""
    return LIMIT_BY_KEY[key].check(value)


class Config:
    """The resolved settings, as attributes; ``token`` holds UNSET, None or a string."""

    def __init__(self, values, token):
        self.__dict__.update(values)
        self.token = token

    def limits(self):
        return {key: getattr(self, key) for key in LIMIT_KEYS}

    def __repr__(self):
        shown = {k: v for k, v in self.__dict__.items() if k != "token"}
        return "Config(%r)" % shown


def load_config(given, environ=None):
    """Resolve every setting from keywords, then WSGIKERNEL_* variables, then defaults."""
    environ = os.environ if environ is None else environ
    given = dict(given)
    token = given.pop("token", UNSET)
    unknown = set(given) - set(BY_KEY)
    if unknown:
        raise TypeError("unknown setting(s): %s" % ", ".join(sorted(unknown)))
    values = {}
    for setting in SETTINGS:
        raw = given.get(setting.key, UNSET)
        source = setting.key
        if raw is UNSET:
            raw, source = environ.get(setting.env_var, UNSET), setting.env_var
        if raw is UNSET:
            values[setting.key] = setting.default
            continue
        try:
            values[setting.key] = setting.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError("%s: %s" % (source, exc)) from None
    for key in LIMIT_KEYS:
        try:
            check_limit(key, values[key])
        except ValueError as exc:
            raise ValueError("%s %s" % (key, exc)) from None
    return Config(values, token)
