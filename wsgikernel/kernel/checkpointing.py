"""The supervisor's checkpoint requests: take, list, drop, restore, undo.

Taking: the user-code process forks a parked copy of itself between cells
(kernel/checkpoint.py) and sends it over with ``checkpointed``; the registry
(kernel/checkpoints.py) keeps it.  Named checkpoints are asked for
(``checkpoint``); automatic ones (``auto_checkpoints``) are taken right before
each cell that goes into history, so ``auto-N`` holds the state before cell N.

Restoring swaps processes: the checkpoint is resumed first (one that died is a
404, and the live namespace stays), its spare parks on in its place, the old
live process is killed with its tree in the background (no grace: its namespace
is being discarded; ProcessTree.replace), session + 1, and history gets a record
of the restore (its own execution count, code ``%restore NAME``).  The answer
waits for the restored process's ``ready``.  ``undo`` restores the newest
automatic checkpoint and drops it, so each call steps back one more cell.

A request while a cell runs or waits is refused (``busy``): a checkpoint is of a
cell boundary, and a restore would discard the cell.  So is one in a bwrap
sandbox (its processes re-parent to the sandbox's init, not to the supervisor)
or without a child subreaper.
"""

import os
import socket
import time

from ..store import read_record, update_record
from ..wire.envelope import (BUSY, CHECKPOINT_EXISTS, CHECKPOINT_REFUSED, NOTHING_TO_UNDO,
                             NOT_RUNNING, UNKNOWN_CHECKPOINT, message)
from .checkpoints import AUTO_PREFIX, Checkpoint, Checkpoints
from .child import Child
from .foster import Foster, await_adoption
from .ledger import Ledger
from .records import Execution
from .sandbox import SandboxedChild

ANSWERS = ("checkpointed", "checkpoint_refused")  # the child's, to a ``checkpoint``


class CheckpointOps:
    OPS = ("checkpoint", "checkpoints", "drop_checkpoint", "restore", "fork")

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.registry = Checkpoints(1, 0)
        self.configure(supervisor.settings)
        supervisor.tree.checkpoints = self.registry
        self.requested = {}      # child message id -> (name, auto, requester or None)
        self.restored = None     # the checkpoint just restored: its spare, once answered

    def handlers(self):
        return {kind: getattr(self, "op_" + kind) for kind in self.OPS}

    def configure(self, settings):
        """The env's ``auto_checkpoints`` and ``max_checkpoints`` (again when a pooled
        kernel is bound to an env that asked for its own)."""
        self.auto = int(settings.get("auto_checkpoints") or 0)
        self.registry.limit = int(settings.get("max_checkpoints") or 8)
        self.registry.auto_limit = self.auto
        self.registry.env_id = self.supervisor.record.get("id")
        self.registry.ledger = Ledger(settings.get("checkpoint_ledger"),
                                      int(settings.get("max_server_checkpoints") or 0))

    # -- taking --------------------------------------------------------------------

    def refusal(self, client, busy_ok=False):
        """Answer ``client`` with why nothing can be done now; True if so."""
        sv = self.supervisor
        if sv.state != "idle":
            client.error(NOT_RUNNING, state=sv.ops.public_state())
        elif not busy_ok and not sv.executions.is_empty():
            running = sv.executions.running
            client.error(BUSY, detail="a cell is running (execution %s)" % (
                running.n if running is not None else "queued"))
        elif isinstance(sv.tree.child, SandboxedChild) or not sv.subreaper:
            client.error(CHECKPOINT_REFUSED, detail="checkpoints need the kernel's processes "
                         "outside a bwrap sandbox, on Linux")
        else:
            return False
        return True

    def op_checkpoint(self, client, body):
        name = body.get("name")
        if not name:  # the first free checkpoint-N
            asked = {entry[0] for entry in self.requested.values()}
            name = next("checkpoint-%d" % n for n in range(1, len(self.registry) + 2
                                                          + len(asked))
                        if self.registry.get("checkpoint-%d" % n) is None
                        and "checkpoint-%d" % n not in asked)
        if self.refusal(client):
            return
        if name.startswith(AUTO_PREFIX):
            client.error(CHECKPOINT_REFUSED, detail="names that start with %r are the "
                         "automatic checkpoints' (auto_checkpoints)" % AUTO_PREFIX)
            return
        asked = {entry[0] for entry in self.requested.values()}
        if self.registry.get(name) is not None or name in asked:
            client.error(CHECKPOINT_EXISTS, name=name)
            return
        self.ask(name, "named", client, bool(body.get("force")))

    def op_fork(self, client, body):
        """Fork the namespace into the env of ``env_dir`` (its env.json written, its work
        dir copied): answered with the pid of its supervisor, which we spare.  Behind a
        running cell it waits in the queue, as a cell would (``queue_fork``)."""
        fork = {"env_dir": body["env_dir"], "work_dir": body["work_dir"],
                "command": list(body["command"]), "forkserver": body.get("forkserver"),
                "standby": body.get("standby")}
        if self.refusal(client, busy_ok=True):
            return
        if self.supervisor.executions.is_empty():
            self.ask(None, "fork", client, bool(body.get("force")), fork)
        else:
            self.queue_fork(client, fork, body)

    def queue_fork(self, client, fork, body):
        """A fork at the next boundary of the queue: an execution of no count whose record
        (``fork_into``) the requester waits on up to ``wait`` s, then polls as a cell's."""
        sv = self.supervisor
        fork = dict(fork, standby=None)  # the requester lets its standby go (foster.py)
        execution = Execution(next(sv.keys), None, {"code": "", "silent": True, "fork": fork,
                                                    "force": bool(body.get("force")),
                                                    "after": sv.execution_count},
                              sv.record["id"], sv.session, None)
        execution.record["fork_into"] = fork["env_dir"]
        sv.executions.add(execution)
        sv.executions.park(client, execution, {"wait": body.get("wait") or 0})
        sv.pump()

    def before_cell(self, execution):
        """An automatic checkpoint of the state before a cell that goes to history; True
        if ``execution`` is a queued fork instead (asked of the child here)."""
        request = execution.request
        if "fork" in request:
            self.ask(None, "fork", None, request["force"], request["fork"], execution,
                     request["after"])
            return True
        if (self.auto and execution.n is not None and not execution.request.get("silent")
                and execution.request.get("store_history", True)
                and self.supervisor.subreaper
                and not isinstance(self.supervisor.tree.child, SandboxedChild)):
            self.ask(AUTO_PREFIX + str(execution.n), "auto", None, False)
        return False

    def ask(self, name, kind, client, force, fork=None, execution=None, after=None):
        """Ask the child for a copy: a checkpoint (``kind`` named or auto) or a fork (of a
        queued ``execution``, which its answer ends, taken ``after`` the cell of that
        count: the last one numbered when it was queued)."""
        sv = self.supervisor
        if fork is not None:  # the count the web tier read may be behind: another worker's
            count = sv.execution_count if after is None else after  # cell, queued since
            try:
                update_record(fork["env_dir"], execution_count=count, forked_from={
                    "env": sv.record.get("id"), "execution_count": count})
            except OSError:  # its dir is gone: the fork's own start says so
                pass
        key = "checkpoint-%d" % next(self.supervisor.keys)
        self.requested[key] = (name, kind, client, execution)
        self.supervisor.tree.send(message("checkpoint", {"force": force, "fork": fork},
                                          id=key))

    def answer(self, envelope):
        """The child's ``checkpointed`` (with the checkpoint's socket) or refusal."""
        sv = self.supervisor
        name, kind, client, execution = self.requested.pop(envelope.get("parent"),
                                                           (None, None, None, None))
        if kind == "fork" and execution is not None:  # a queued fork: it ends, the queue goes on
            if envelope["type"] == "checkpointed":
                self.registry.forks.add(envelope["body"]["pid"])
                outcome = {"status": "ok"}
            else:
                detail = envelope["body"].get("detail") or "refused"
                outcome = {"status": "error", "error": {"ename": "ForkRefused",
                                                        "evalue": detail,
                                                        "traceback": ["ForkRefused: " + detail]}}
            if sv.executions.running is execution:
                sv.executions.complete(execution, outcome)
                sv.pump()
            return
        if envelope["type"] == "checkpointed" and kind == "fork":
            self.registry.forks.add(envelope["body"]["pid"])  # never swept with our tree
            if client is not None:
                client.reply({"pid": envelope["body"]["pid"]})
            return
        if envelope["type"] == "checkpoint_refused":
            detail = envelope["body"].get("detail")
            if client is not None:
                client.error(CHECKPOINT_REFUSED, detail=detail)
            else:
                sv.files.log.write("automatic checkpoint %s not taken: %s\n" % (name, detail))
            return
        child = sv.tree.child
        fd = child.passed_fds.pop(0) if child is not None and child.passed_fds else None
        if fd is None or name is None:
            if fd is not None:
                os.close(fd)  # its copy sees end of file, and exits
            if client is not None:
                client.error(CHECKPOINT_REFUSED, detail="the copy of the process was lost")
            return
        auto = kind == "auto"
        count = sv.execution_count if not auto else int(name[len(AUTO_PREFIX):]) - 1
        checkpoint = Checkpoint(name, envelope["body"]["pid"], socket.socket(fileno=fd),
                                count, sv.session, auto)
        self.registry.add(checkpoint)
        if client is not None:
            client.reply({"checkpoint": checkpoint.describe()})  # memory: GET lists it
        checkpoint.ask_spare()

    def drop_requests(self):
        """The child is gone: what it was asked to copy will never come."""
        for name, kind, client, execution in self.requested.values():
            if client is not None:
                client.error(NOT_RUNNING, state=self.supervisor.ops.public_state())
        self.requested = {}

    def answered(self, record):
        """A queued fork that did not happen (refused, aborted by a stop or a death): its
        env, still ``starting``, is dead, and says why."""
        env_dir = record.get("fork_into")
        if not env_dir or record.get("status") == "ok":
            return
        why = (record.get("error") or {}).get("evalue") or record.get("status")
        try:
            if (read_record(env_dir) or {}).get("state") == "starting":
                update_record(env_dir, state="dead", reason="start_failed", pid=None,
                              detail="the fork did not happen: %s" % why,
                              exit={"code": None, "signal": None})
        except OSError:
            pass  # deleted meanwhile

    # -- what there is -------------------------------------------------------------

    def op_checkpoints(self, client, body):
        listing = self.registry.listing()
        sizes = [found["memory"] for found in listing]
        client.reply({"checkpoints": listing, "memory": None if None in sizes else sum(sizes)})

    def op_drop_checkpoint(self, client, body):
        if self.registry.drop(body.get("name")) is None:
            client.error(UNKNOWN_CHECKPOINT, name=body.get("name"))
        else:
            client.reply({"checkpoints": len(self.registry)})

    # -- restoring -------------------------------------------------------------------

    def op_restore(self, client, body):
        """Answered (as a restart is) once the checkpoint, the live process now, is
        ready: ``restored`` {name, execution_count} in the status."""
        if self.refusal(client):
            return
        if body.get("undo"):
            checkpoint = self.registry.latest_auto()
            if checkpoint is None:
                client.error(NOTHING_TO_UNDO, detail=(
                    "no automatic checkpoint is left to go back to" if self.auto else
                    "auto_checkpoints is 0 for this environment: no state before its cells "
                    "was kept"))
                return
        else:
            checkpoint = self.registry.get(body.get("name"))
            if checkpoint is None:
                client.error(UNKNOWN_CHECKPOINT, name=body.get("name"))
                return
        sv = self.supervisor
        try:  # before the live namespace is thrown away: a dead checkpoint changes nothing
            child = self.registry.resume(checkpoint)
        except OSError as exc:
            sv.files.log.write("restore failed: %s\n" % exc)
            self.registry.drop(checkpoint.name)
            client.error(UNKNOWN_CHECKPOINT, name=checkpoint.name, detail="its process "
                         "ended (killed, perhaps for memory); the live namespace is as it was")
            return
        if self.registry.get(checkpoint.name) is not checkpoint:
            sv.files.log.write("checkpoint %s is used up by its restore: no copy of it could "
                               "be forked to park on\n" % checkpoint.name)
        elif body.get("undo"):
            self.registry.drop(checkpoint.name)
        else:
            self.restored = checkpoint
        sv.child_gone()  # what the old child was asked is never answered now
        sv.tree.replace(child)  # the old one dies in the background
        sv.session += 1
        sv.record.update(session=sv.session, exit=None, reason=None)
        sv.state = "starting"  # executions submitted now wait for the restored child
        sv.ops.on_ready.append(client)
        self.record(checkpoint)

    def child_ready(self):
        """A child is ready (a restored one: answered): what a restore kept off its
        path -- the old tree's end, the checkpoint's next spare."""
        self.supervisor.tree.ready()
        restored, self.restored = self.restored, None
        if restored is not None and self.registry.get(restored.name) is restored:
            restored.ask_spare()

    def handed_over(self):
        """False if this is a standby supervisor (``awaiting``) that no fork's copy handed
        its process to; else True, and a standby has it in ``adopting`` and ``foster``,
        with the count the source's supervisor wrote into env.json before the fork."""
        sv = self.supervisor
        if sv.awaiting is None:
            return True
        handed, sv.awaiting = await_adoption(sv.awaiting, sv.files.env_dir), None
        if handed is None:
            return False
        sv.adopting, sv.foster = handed
        current = read_record(sv.files.env_dir) or {}
        for key in ("execution_count", "forked_from"):
            sv.record[key] = current.get(key, sv.record.get(key))
        sv.execution_count = max(sv.record.get("execution_count") or 0,
                                 sv.files.history.last_count())
        return True

    def restoring(self):
        """Instead of a fresh child: a forked env's first one (``adopting``), our child
        if we were exec'd in its parent, else its reaper's (``foster``); False if none."""
        sv = self.supervisor
        if not sv.adopting:
            return False
        pid, control, out_r, err_r = sv.adopting
        sv.adopting = None
        if sv.foster:
            sv.tree.foster_by(Foster(*sv.foster))
            sv.foster = None
        sv.tree.adopt(Child.adopted(pid, socket.socket(fileno=control), out_r, err_r))
        return True

    def record(self, checkpoint):
        """The restore in history, as a cell of its own."""
        sv = self.supervisor
        sv.execution_count += 1
        code = "%%restore %s" % checkpoint.name
        execution = Execution(next(sv.keys), sv.execution_count, {"code": code},
                              sv.record["id"], sv.session, None)
        execution.started_at = time.monotonic()
        execution.add_stream("stdout", "restored checkpoint %r (taken after cell %d)\n" % (
            checkpoint.name, checkpoint.execution_count))
        record = dict(execution.completed({"status": "ok"}),
                      restored={"checkpoint": checkpoint.name,
                                "execution_count": checkpoint.execution_count})
        sv.files.persist(execution, record)
        sv.ops.restored = record["restored"]
