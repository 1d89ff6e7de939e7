"""The env object of DESIGN 4.1: env.json merged with what the live kernel says.

``describe`` asks a kernel whose env.json says ``idle`` for its status (with a
timeout); a kernel that does not answer makes its env report what env.json
last said, and one whose supervisor is gone is recorded dead there and then.
``list`` asks no kernel: it reads the status each running supervisor
publishes in status.json (store.StatusFile, which is also its sign of life),
and asks only where that is missing, torn, orphaned or another kernel's -- so
listing 200 envs is 200 small reads, not 200 round trips.
"""

from .. import parked
from ..provisioning import for_record
from ..store import log_tail, read_status
from ..wire.connection import KernelGone
from ..wire.envelope import PROTOCOL_VERSION
from .errors import EnvironmentNotFound, KernelIncompatible

# Reasons of a dead env whose ``detail`` (and, for start_failed, ``log``) the env shows.
EXPLAINED = ("start_failed", "corrupt_record", "unreadable_record")


class EnvDescriber:
    def __init__(self, registry, link):
        self.registry = registry
        self.link = link
        self.statuses = {}  # env dir -> (status.json's bytes, parsed): see read_status

    def describe(self, env_id, touch=True, memory=True, status=None):
        """The env object of ``env_id``; ``touch`` counts as activity (the idle timeout);
        ``memory``: with what its checkpoints pin (a /proc walk of each: GET /envs/{id});
        ``status``: the kernel's status as an answer just brought it (not asked again)."""
        record = self.registry.read(env_id)
        given, status = status, {}
        if record.get("state") == "idle":
            if record.get("protocol") != PROTOCOL_VERSION:
                record = dict(record, state="dead", reason="protocol_mismatch")
            elif given is not None:
                status = given
            else:
                try:
                    status = self.link.call(record, "status", {"touch": touch,
                                                               "memory": memory})
                except KernelIncompatible:
                    record = dict(record, state="dead", reason="protocol_mismatch")
                except KernelGone:
                    if not for_record(record).running():
                        record = self.link.mark_dead(env_id, record)
                if status.get("state") in ("dead", "stopped"):
                    # It died after we read env.json: the supervisor saved it first.
                    record = self.registry.read(env_id)
        if record.get("state") == "starting":
            why = for_record(record).abandoned()
            if why:
                record = self.link.mark_abandoned(env_id, record, why)
        elif record.get("state") in ("dead", "stopped"):  # cells parked for it never run
            self.link.end_parked(env_id, record.get("detail") or "the kernel ended (%s) "
                                 "before it ran them" % record.get("reason"))
        env = env_object(record, status)
        if env["state"] == "starting":  # cells parked for a queued job (parked.py)
            env["queued"] = parked.count(self.registry.env_dir(env_id))
        env.update(for_record(record).details(env))
        if env.get("reason") == "start_failed":
            env["log"] = log_tail(self.registry.env_dir(env_id))  # why, as the kernel told it
        return env

    def list(self):
        """Every env's object; listing does not count as activity."""
        envs, published = [], []
        ids = self.registry.ids()
        for env_id in ids:
            try:
                env, record = self.listed(env_id)
            except EnvironmentNotFound:
                continue  # deleted while we listed
            envs.append(env)
            if record is not None:
                published.append((record, env))
        self.add_details(published)
        self.registry.forget_missing(ids)
        if len(self.statuses) > 2 * len(ids) + 16:  # deleted envs' entries
            self.statuses.clear()
        return envs


    def listed(self, env_id):
        """(env object, record) from env.json and the published status; (describe(),
        None) where the status cannot be used."""
        record = self.registry.read(env_id)
        if record.get("state") != "idle" or record.get("protocol") != PROTOCOL_VERSION:
            return self.describe(env_id, touch=False), None
        status = read_status(self.registry.env_dir(env_id), self.statuses)
        if (status is None or status.get("supervisor_pid") != record.get("supervisor_pid")
                or status.get("state") in ("dead", "stopped")):
            return self.describe(env_id, touch=False), None
        return env_object(record, status), record

    @staticmethod
    def add_details(published):
        """What describe() adds from where each kernel runs, for envs listed from their
        published status: one question per kind of provisioner (one squeue for every
        Slurm job), not one per env."""
        kinds = {}
        for record, env in published:
            kinds.setdefault(type(for_record(record)), []).append((record, env))
        for kind, pairs in kinds.items():
            for (_, env), extra in zip(pairs, kind.details_of(pairs)):
                env.update(extra)


def env_object(record, status):
    """Merge env.json with a live status reply into the API's env object."""
    state = status.get("state") or record.get("state") or "starting"
    env = {
        "id": record.get("id"), "state": state,
        "session": status.get("session", record.get("session", 1)),
        "execution_count": status.get("execution_count", record.get("execution_count", 0)),
        "queued": status.get("queued", 0),
        "created": record.get("created"),
        "last_activity": status.get("last_activity") or record.get("last_activity")
        or record.get("created"),
        "pid": status.get("pid", record.get("pid")),
        "limits": record.get("limits") or {},
        "cwd": record.get("cwd"),
        "sandbox": "bwrap" if record.get("sandbox") else "none",
    }
    if record.get("sandbox"):
        env["sandbox_network"] = bool(record["sandbox"].get("network"))
    if record.get("forked_from"):
        env["forked_from"] = record["forked_from"]
    if (record.get("settings") or {}).get("auto_checkpoints"):
        env["auto_checkpoints"] = record["settings"]["auto_checkpoints"]
    if status.get("checkpoints"):  # an env that keeps none shows none
        env["checkpoints"] = status["checkpoints"]
    if "checkpoint_memory" in status:
        env["checkpoint_memory"] = status["checkpoint_memory"]
    if state in ("dead", "stopped"):
        env["exit"] = record.get("exit") or {"code": None, "signal": None}
        env["reason"] = record.get("reason")
        env["pid"] = None
        if env["reason"] in EXPLAINED and record.get("detail"):
            env["detail"] = record["detail"]
    return env
