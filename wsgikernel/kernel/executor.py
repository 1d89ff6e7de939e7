"""The user-code process: runs cells on its main thread, answers questions on another.

It is forked by the supervisor (``supervisor.py``) with fds 1 and 2 already
pipes to it and one control socket.  ``run()`` never returns.  Messages (the
envelope of wire/envelope.py: type, id or parent, body):

  in:  execute (id) {n, code, silent, user_expressions, stdin, allow_stdin, input_timeout,
       cap, magics, figures}; rebind {work_dir}; input_reply (parent) {seq, value}
       checkpoint (id) {force}  (on the main thread, between cells: checkpoint.py)
       complete / inspect / is_complete / variables (id) {...}
  out: ready {pid}; stream (parent) {name, text}; output (parent) {the output};
       truncated (parent); done (parent) {status, result, error, user_expressions};
       reply or error (parent) {...}; checkpointed (parent) {pid} + its socket
       (SCM_RIGHTS) or checkpoint_refused (parent) {detail};
       input_request (parent) {prompt, password, seq}, input_end (parent) {seq} (asking.py)

``parent`` of an output message is the execution the writing thread belongs to
(None if none is known): as ipykernel 6+ does, every ``threading.Thread`` is
tagged when it is created with the execution of the thread creating it (the
running cell for the main thread, the creator's own tag for any other thread),
so a thread a cell started, and the threads it starts, write for that cell
even after it ended.  The supervisor puts such output in that execution's
record while it is open, else in the env's late output, never in another
execution's record.  Thread pools reuse their threads: a pool's workers belong
to the cell that created them.

Cells run on the main thread, one at a time, in the order received, so SIGINT
(interrupt) lands in the running cell as KeyboardInterrupt; outside a cell it
is ignored.  Introspection requests are answered from short-lived threads that
read the namespace while a cell may be running (see introspect.py for what
consistency that gives).  If the supervisor goes away (control socket EOF),
the whole process group is killed: no orphan outlives its supervisor.
"""

import builtins
import os
import signal
import sys
import threading
import types

from ..wire.envelope import INTERNAL, UNKNOWN_TYPE, message
from ..wire.framing import encode
from .asking import Asker
from .capture import CaptureFds, OutputBudget, OutStream, StdinText, guarded_open, \
    wait_for_pipes_drained
from .display import FORMATTERS
from .execute import Shell
from .figures import Figures, is_figure
from .inbox import Inbox, readable

INTROSPECTION = ("complete", "inspect", "is_complete", "variables")
THREAD_TAG = "_wsgikernel_execution"  # attribute of a Thread: the execution it belongs to


class Channel:
    """The control socket, shared by the main thread and the helper threads."""

    def __init__(self, sock, pipe_fds=(1, 2)):
        self.sock = sock
        self.lock = threading.Lock()
        self.pipe_fds = pipe_fds

    def send(self, message):
        data = encode(message)
        with self.lock:
            self.sock.sendall(data)

    def send_fds(self, message, fds):
        """Send ``message`` with descriptors (SCM_RIGHTS) attached to its first bytes."""
        import socket
        data = encode(message)
        with self.lock:
            sent = socket.send_fds(self.sock, [data], fds)
            if sent < len(data):
                self.sock.sendall(data[sent:])

    def send_in_order(self, message):
        """Send after the supervisor has read what fds 1 and 2 hold (see capture.py)."""
        wait_for_pipes_drained(self.pipe_fds)
        self.send(message)


class Executor:
    def __init__(self, sock, work_dir, fds=None):
        self.work_dir = work_dir
        self.fds = fds if fds is not None else CaptureFds()
        self.channel = Channel(sock, (self.fds.copy_of(1), self.fds.copy_of(2)))
        self.sock = sock
        self.inbox = Inbox(sock, self.dispatch)
        self.executing = False
        self.starting = self.pending_interrupt = False  # see on_sigint
        self.copies = set()      # our forked copies (checkpoints, forks): reaped between cells
        self.current = None      # id of the execution the main thread runs, None between cells
        self.main_ident = threading.get_ident()
        self.budget = OutputBudget()
        self.stdin = StdinText("")
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main  # so pickle finds classes defined in cells
        self.namespace = main.__dict__
        self.shell = Shell(self.namespace, self.emit_output)
        self.figures = Figures(self.emit_output)
        self.shell.after_cell = self.figures.flush
        self.stdout = OutStream("stdout", 1, self.send_in_order, self.budget, self.write_tag)
        self.stderr = OutStream("stderr", 2, self.send_in_order, self.budget, self.write_tag)
        self.asker = Asker(self.stdout.write, self.send_in_order, lambda: self.current)

    def send_in_order(self, message):
        self.channel.send_in_order(message)  # the channel of now: a restore makes a new one

    def rewire(self, sock):
        """In a process resumed from a checkpoint (checkpoint.py): new channels to the
        supervisor and new locks around the namespace as it was; fds 1 and 2 are the
        new pipes already."""
        self.fds = CaptureFds()
        self.sock = sock
        self.channel = Channel(sock, (self.fds.copy_of(1), self.fds.copy_of(2)))
        self.inbox = Inbox(sock, self.dispatch)
        self.install()
        threading.Thread(target=self.inbox.read_while_lent, name="kernel-reader",
                         daemon=True).start()

    # -- whose output is it --------------------------------------------------

    def thread_execution(self):
        """The execution the calling thread belongs to (None: none known).

        Never creates a Thread object (``threading.current_thread()`` would, for a
        thread started with ``_thread``, and that runs the creation hook again).
        """
        ident = threading.get_ident()
        if ident == self.main_ident:
            return self.current
        thread = getattr(threading, "_active", {}).get(ident)
        return getattr(thread, THREAD_TAG, None)

    def tag_threads(self):
        """Tag every Thread at creation with the execution of the thread creating it."""
        executor = self
        original = threading.Thread.__init__
        if hasattr(original, "__wrapped__"):
            return  # tagged already (a process resumed from a checkpoint)

        def __init__(thread, *args, **kwargs):
            original(thread, *args, **kwargs)
            setattr(thread, THREAD_TAG, executor.thread_execution())

        __init__.__wrapped__ = original
        __init__.__doc__ = original.__doc__
        threading.Thread.__init__ = __init__

    def write_tag(self):
        """(execution, counted) of a sys.stdout/sys.stderr write: only writes for the
        running execution (or for none known) count against its cap; a thread of an
        execution that ended is kept bounded by the supervisor instead."""
        key = self.thread_execution()
        return key, key is None or key == self.current

    def emit_output(self, output):
        self.channel.send_in_order(message("output", output, parent=self.thread_execution()))

    def install(self):
        """Make this process look like an interactive interpreter's, with our I/O."""
        sys.stdout, sys.stderr, sys.stdin = self.stdout, self.stderr, self.stdin
        sys.argv = [""]
        self.asker.install()
        self.shell.displays.install(builtins)
        builtins.open = guarded_open(builtins.open)
        self.tag_threads()
        if self.format_figure not in FORMATTERS:  # once, whatever restores come after
            FORMATTERS.append(self.format_figure)
            self.figures.install()
            self.shell.displays.hook()
        signal.signal(signal.SIGINT, self.on_sigint)

    def format_figure(self, obj):
        return self.figures.bundle(obj) if is_figure(obj) else None

    def on_sigint(self, signum, frame):
        """KeyboardInterrupt in the running cell; between cells, for the one about to
        begin if its execute is taken or on the socket (sent before the signal, which
        under load can come first), else it was for a cell already done."""
        if self.executing:
            raise KeyboardInterrupt
        if self.starting or readable(self.sock):
            self.pending_interrupt = True

    # -- threads -------------------------------------------------------------

    def moved(self, work_dir):
        """The work dir is now ``work_dir`` (a claimed pooled kernel, a fork)."""
        if sys.path and sys.path[0] == self.work_dir:
            sys.path[0] = work_dir
        self.work_dir = work_dir

    def dispatch(self, envelope):
        """Whatever comes on the socket but a cell (kernel/inbox.py reads it)."""
        kind = envelope.get("type")
        if kind == "rebind":  # a pooled kernel was claimed: its directory moved
            self.moved(envelope["body"]["work_dir"])
        elif kind == "input_reply":
            self.asker.answered(envelope["body"])
        elif kind in INTROSPECTION:
            threading.Thread(target=self.answer, args=(envelope,), daemon=True).start()
        else:
            self.channel.send(message("error", {"code": UNKNOWN_TYPE},
                                      parent=envelope.get("id")))

    def answer(self, envelope):
        from . import introspect  # on first use: most kernels never complete or inspect
        try:
            reply = message("reply", introspect.HANDLERS[envelope["type"]](
                self.namespace, envelope["body"]), parent=envelope.get("id"))
        except Exception as exc:  # introspection failing is data, not a dead kernel
            reply = message("error", {"code": INTERNAL, "detail": "%s: %s" % (
                type(exc).__name__, exc)}, parent=envelope.get("id"))
        try:
            self.channel.send(reply)
        except OSError:
            pass

    def run_forever(self):
        self.channel.send(message("ready", {"pid": os.getpid()}))
        while True:
            self.reap_copies()
            envelope = self.inbox.next_execute()  # read on this thread between cells
            if envelope.get("type") == "checkpoint":
                self.checkpoint(envelope)
                continue
            self.starting = True
            self.inbox.lend()
            outcome = self.execute(envelope["body"], envelope["id"])
            self.channel.send_in_order(message("done", outcome, parent=envelope["id"]))

    def reap_copies(self):
        """Wait for our copies that ended (never for a pid of the user's: only ours); the
        SIGCHLD handler checkpoint.watch set is removed once none is left."""
        for pid in list(self.copies):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    self.copies.discard(pid)
            except ChildProcessError:  # reaped by user code's waitpid(-1), or not ours now
                self.copies.discard(pid)
        if not self.copies and signal.getsignal(signal.SIGCHLD) == self.reaper:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def reaper(self, signum, frame):
        self.reap_copies()

    def checkpoint(self, envelope):
        """Park a forked copy of this process (checkpoint.py): ``checkpointed`` {pid} with
        its socket, or ``checkpoint_refused`` {detail}."""
        from . import checkpoint
        body = envelope["body"]
        why = checkpoint.refusal(body.get("force"), THREAD_TAG)
        try:
            if why is None and body.get("fork"):  # into a new env: its supervisor's pid
                pid = checkpoint.fork_env(self, **body["fork"])
                self.channel.send(message("checkpointed", {"pid": pid},
                                          parent=envelope.get("id")))
                return
            if why is None:
                pid, sock = checkpoint.take(self)
                try:
                    self.channel.send_fds(message("checkpointed", {"pid": pid},
                                                  parent=envelope.get("id")), [sock.fileno()])
                finally:
                    sock.close()
                return
        except OSError as exc:  # no descriptor, no memory, no pid left: the kernel goes on
            why = "the process could not be copied: %s" % (exc.strerror or exc)
        self.channel.send(message("checkpoint_refused", {"detail": why},
                                  parent=envelope.get("id")))

    def execute(self, message, key):
        self.fds.restore()  # a cell before may have closed or replaced fd 0, 1 or 2
        self.stdin = StdinText(message.get("stdin") or "")
        self.asker.start_cell(self.stdin, message.get("allow_stdin"),
                              message.get("input_timeout"))
        sys.stdout, sys.stderr, sys.stdin = self.stdout, self.stderr, self.stdin
        self.budget.reset(message.get("cap"))
        self.figures.start_cell(message.get("figures", "png"))
        self.current = key
        try:
            self.executing, self.starting = True, False
            try:
                if self.pending_interrupt:  # it came before the cell could begin
                    self.pending_interrupt = False
                    raise KeyboardInterrupt
                return self.shell.run_cell(message["code"], message.get("n"),
                                           silent=message.get("silent", False),
                                           user_expressions=message.get("user_expressions"),
                                           magics=message.get("magics", True))
            finally:
                self.executing = False
                self.current = None
        except KeyboardInterrupt:  # landed outside the cell's own frames
            return {"status": "error", "result": None, "user_expressions": {},
                    "error": {"ename": "KeyboardInterrupt", "evalue": "",
                              "traceback": ["KeyboardInterrupt"]}}


def apply_limits(rlimits):
    """rlimits of this (user-code) process only; the supervisor stays unlimited.

    ``rlimits`` is [[RLIMIT_NAME, value, soft_only]], made from the one table of
    limits (config.LIMITS, via config.rlimits) by whoever launched the kernel."""
    import resource
    for name, value, soft_only in rlimits or ():
        which = getattr(resource, name)
        value = int(value)
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard if soft_only else value))
    # Past RLIMIT_FSIZE a write raises OSError (EFBIG) instead of killing the kernel.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def unshadow(work_dir, machinery, kept):
    """Forget the modules the kernel imported that a file in ``work_dir`` shadows.

    A cell's ``import resource`` then finds the user's ``resource.py``, as in a
    ``python`` started there, while the kernel keeps the references it took
    (module globals).  Not forgotten, as Python would not replace them either:
    what the interpreter had loaded before the kernel's imports (``kept``), builtin
    and frozen modules, ``__main__`` and the kernel's own package.
    """
    try:
        present = {entry.partition(".")[0] for entry in os.listdir(work_dir)}
    except OSError:
        return
    ours = {"__main__", __name__.partition(".")[0]}
    for name in {key.partition(".")[0] for key in sys.modules} & present - ours:
        if (name in kept or machinery.BuiltinImporter.find_spec(name) is not None
                or machinery.FrozenImporter.find_spec(name) is not None):
            continue
        try:
            spec = machinery.PathFinder.find_spec(name, [work_dir])
        except (ImportError, OSError, ValueError):
            continue
        if spec is None or spec.loader is None:  # none there, or a namespace portion
            continue
        for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            del sys.modules[key]


def main(kept):
    """Entry point of a user-code process that is a new interpreter (in a sandbox, see
    sandbox.py): the control socket is fd 3, the rest is the last argument (JSON);
    ``kept`` is what the interpreter had loaded before the kernel's imports."""
    import gc
    import json
    import socket
    gc.collect()
    gc.freeze()  # the kernel's own objects, as a forked child has them (forkserver.py)
    args = json.loads(sys.argv[-1])
    sock = socket.socket(fileno=3)
    run(sock, args["work_dir"], args["rlimits"], args["preload"], kept)


def run(sock, work_dir, rlimits, preload=(), kept=None):
    """Entry point of the forked user-code process; never returns.

    Everything the kernel needs is imported before the work dir goes on sys.path
    (most of it by the supervisor, before the fork), so no file of the user's can
    break the start; a start that fails anyway prints its traceback on fd 2, which
    the supervisor copies to kernel.log (``Supervisor.announce_failure``).
    """
    status = 1
    import traceback
    try:
        import importlib.machinery
        if kept is None:
            entry = sys.modules.get(__name__.rpartition(".")[0] + ".__main__")
            kept = getattr(entry, "INTERPRETER_MODULES", None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(work_dir)
        fds = CaptureFds()  # before the limits: open_files_limit may leave no room
        apply_limits(rlimits)
        sys.path[0:1] = [work_dir]  # like `python` started in the work dir
        if kept is not None:  # started by the launcher (else: nothing is forgotten)
            unshadow(work_dir, importlib.machinery, kept)
        executor = Executor(sock, work_dir, fds)
        executor.install()
        # Before preload: a preload that hangs still dies with its supervisor.
        threading.Thread(target=executor.inbox.read_while_lent, name="kernel-reader",
                         daemon=True).start()
        for module in preload or ():
            try:
                __import__(module)
            except Exception as exc:
                print("preload of %s failed: %s" % (module, exc), file=sys.__stderr__)
        executor.run_forever()
    except BaseException:
        traceback.print_exc(file=sys.__stderr__)
        sys.__stderr__.flush()
    finally:
        os._exit(status)
