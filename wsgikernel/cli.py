"""The client commands of ``python -m wsgikernel`` (``serve`` lives in server.py).

    wsgikernel envs                      list environments
    wsgikernel create ENV                create (idempotent)
    wsgikernel rm ENV                    delete
    wsgikernel exec ENV [CODE | -]       run code (stdin when CODE is - or absent)
    wsgikernel run ENV FILE.py           run a file as one cell
    wsgikernel complete ENV CODE         completions at the end of CODE
    wsgikernel history ENV               In/Out of every execution
    wsgikernel notebook ENV > out.ipynb  the history as a notebook

``exec`` and ``run`` create ENV if absent and stream: the cell's stdout and
stderr are written to the local stdout and stderr as they arrive, then the
result's text/plain.  Exit status: 0 when the cell ran, 1 when it raised (the
traceback goes to stderr) or was stopped, 2 when the service refused (the
problem's detail goes to stderr), 130 after Ctrl-C (which cancels the cell).
When the terminal can answer (stdin is a tty, and the code did not come from it),
the cell's ``input()`` prompts on it and ``getpass()`` reads without echo.
``--url``/``--token`` default to $WSGIKERNEL_URL/$WSGIKERNEL_TOKEN.
"""

import argparse
import functools
import json
import sys

from .client import Client, ServiceError
from .config import LIMIT_KEYS, LIMITS
from .terminal import Progress, Terminal, _isatty

OK, USER_ERROR, SERVICE_ERROR, INTERRUPTED = 0, 1, 2, 130


def build_parser(prog="wsgikernel"):
    parser = argparse.ArgumentParser(prog=prog, description="Drive a wsgikernel service.")
    add_connection_options(parser, None)
    # The same options after the command too; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    add_parser = functools.partial(commands.add_parser, parents=[common])
    sub = add_parser("envs", help="list environments")
    sub.add_argument("--json", action="store_true", help="print the env objects as JSON")
    sub = add_parser("create", help="create an environment (idempotent)")
    sub.add_argument("env")
    for limit in LIMITS:  # config.LIMITS: the one table of limits
        sub.add_argument(limit.flag, dest=limit.key, type=limit_type(limit), help=limit.help)
    sub.add_argument("--sandbox", choices=("none", "bwrap"),
                     help="run its code inside bubblewrap (default: the server's choice)")
    sub.add_argument("--sandbox-network", action="store_true", default=None,
                     help="give the sandbox a network (where the server allows it)")
    sub.add_argument("--auto-checkpoints", type=int, metavar="N",
                     help="keep the state before each of the last N cells (for restore "
                          "without a name: undo)")
    sub.add_argument("--resources", type=json_object_arg, metavar="JSON",
                     help='a Slurm job\'s resources (launcher slurm), e.g. \'{"cpus": 4, '
                          '"mem": "8G", "gpus": 1, "time": "2:00:00"}\'')
    sub = add_parser("rm", help="delete an environment")
    sub.add_argument("env")
    for name, what in (("exec", "run code (from stdin when CODE is - or absent)"),
                       ("run", "run a Python file as one cell")):
        sub = add_parser(name, help=what)
        sub.add_argument("env")
        if name == "exec":
            sub.add_argument("code", nargs="?", default="-")
        else:
            sub.add_argument("file")
        sub.add_argument("--timeout", type=float, help="seconds before the cell is interrupted")
    sub = add_parser("fork", help="a new environment with a copy of ENV's namespace")
    sub.add_argument("env")
    sub.add_argument("new", nargs="?", help="the new environment's id (generated if absent)")
    sub.add_argument("--force", action="store_true",
                     help="fork although threads a cell started still run")
    sub = add_parser("checkpoint", help="keep ENV's namespace as NAME (--list: list them)")
    sub.add_argument("env")
    sub.add_argument("name", nargs="?")
    sub.add_argument("--list", action="store_true", help="list the checkpoints instead")
    sub.add_argument("--force", action="store_true",
                     help="take it although threads a cell started still run")
    sub = add_parser("restore", help="make ENV's namespace checkpoint NAME's again "
                     "(without NAME: undo the last cell)")
    sub.add_argument("env")
    sub.add_argument("name", nargs="?")
    sub = add_parser("complete", help="completions at the end of CODE")
    sub.add_argument("env")
    sub.add_argument("code")
    sub = add_parser("history", help="In/Out of every execution")
    sub.add_argument("env")
    sub = add_parser("notebook", help="the history as an .ipynb on stdout")
    sub.add_argument("env")
    return parser


def limit_type(limit):
    """argparse type: the limit's parser and minimum (a bad value is a usage error, 2)."""
    def read(text):
        try:
            return limit.read(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    read.__name__ = limit.key  # argparse names the type in its message
    return read


def add_connection_options(parser, default):
    parser.add_argument("--url", default=default,
                        help="service URL [WSGIKERNEL_URL, else http://127.0.0.1:8080]")
    parser.add_argument("--token", default=default, help="API token [WSGIKERNEL_TOKEN]")


def main(argv=None, prog="wsgikernel"):
    args = build_parser(prog).parse_args(argv)
    client = Client(args.url, args.token)
    try:
        return COMMANDS[args.command](client, args)
    except ServiceError as exc:
        print("wsgikernel: %s" % exc.detail, file=sys.stderr)
        return SERVICE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED


# -- commands ------------------------------------------------------------------

def cmd_envs(client, args):
    envs = client.envs()
    if args.json:
        print(json.dumps(envs, indent=2))
        return OK
    rows = [("ID", "STATE", "SESSION", "EXECUTIONS", "LAST ACTIVITY")]
    rows += [(e["id"], e["state"], str(e["session"]), str(e["execution_count"]),
              e.get("last_activity") or "") for e in envs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return OK


def json_object_arg(text):
    """argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("not JSON: %s" % exc) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"cpus\": 2}'")
    return value


def cmd_create(client, args):
    options = {key: getattr(args, key) for key in LIMIT_KEYS + (
        "sandbox", "sandbox_network", "resources", "auto_checkpoints")
        if getattr(args, key) is not None}
    env = client.create(args.env, **options)
    print("%s %s" % (env["id"], env["state"]))
    return OK


def cmd_rm(client, args):
    client.delete(args.env)
    return OK


def cmd_exec(client, args):
    if args.code == "-" and _isatty(sys.stdin):
        print("wsgikernel: reading code from stdin; end it with Ctrl-D", file=sys.stderr)
    code = sys.stdin.read() if args.code == "-" else args.code
    return run_cell(client, args.env, code, args.timeout, asks=args.code != "-")


def cmd_run(client, args):
    try:
        with open(args.file, encoding="utf-8") as handle:
            code = handle.read()
    except OSError as exc:
        print("wsgikernel: cannot read %s: %s" % (args.file, exc.strerror), file=sys.stderr)
        return SERVICE_ERROR
    return run_cell(client, args.env, code, args.timeout, asks=True)


def cmd_fork(client, args):
    env = client.fork(args.env, args.new, force=args.force)
    print("%s %s" % (env["id"], env["state"]))
    return OK


def cmd_checkpoint(client, args):
    if args.list:
        for found in client.checkpoints(args.env):
            print("%s  after cell %d  %s  %s MiB" % (
                found["name"], found["execution_count"], found["created"],
                "?" if found.get("memory") is None else "%.1f" % (found["memory"] / 2 ** 20)))
        return OK
    print(client.checkpoint(args.env, args.name, force=args.force)["name"])
    return OK


def cmd_restore(client, args):
    env = client.restore(args.env, args.name) if args.name else client.undo(args.env)
    print("%s: checkpoint %s (after cell %d), session %d" % (
        env["id"], env["restored"]["checkpoint"], env["restored"]["execution_count"],
        env["session"]))
    return OK


def cmd_complete(client, args):
    for match in client.complete(args.env, args.code)["matches"]:
        print(match)
    return OK


def cmd_history(client, args):
    for record in client.history(args.env):
        n = record["execution_count"]
        print("In [%s]: %s" % (n, _indent(record["code"], len("In [%s]: " % n))))
        if record["stdout"]:
            sys.stdout.write(_ensure_newline(record["stdout"]))
        result = (record.get("result") or {}).get("text/plain")
        if result is not None:
            print("Out[%s]: %s" % (n, result))
        error = record.get("error")
        if error:
            print("%s: %s" % (error["ename"], error["evalue"]))
        print()
    return OK


def cmd_notebook(client, args):
    json.dump(client.notebook(args.env), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
    return OK


COMMANDS = {"envs": cmd_envs, "create": cmd_create, "rm": cmd_rm, "exec": cmd_exec,
            "run": cmd_run, "complete": cmd_complete, "history": cmd_history,
            "notebook": cmd_notebook, "fork": cmd_fork, "checkpoint": cmd_checkpoint,
            "restore": cmd_restore}


# -- exec and run -------------------------------------------------------------------

def run_cell(client, env, code, timeout=None, asks=False):
    """Create ``env`` if absent, stream ``code`` through it; the exit status.  With
    ``asks`` and a terminal on stdin, the cell's input() is answered from it."""
    client.create(env)
    opts = {} if timeout is None else {"timeout": timeout}
    progress = Progress(sys.stderr)
    terminal = Terminal(progress) if asks and _isatty(sys.stdin) else None
    if terminal is not None:
        opts["input"] = terminal.ask
    n, record = None, None
    try:
        for event in client.stream(env, code, **opts):
            kind = event.get("event")
            if kind == "accepted":
                n = event.get("execution_count")
            elif kind == "output":
                progress.clear()
                if terminal is not None:
                    event = terminal.unechoed(event)
                write_output(event)
            elif kind == "record":
                record = event
            elif kind == "error":
                raise ServiceError(502, {"title": "Stream broken", "detail": event.get(
                    "detail") or "the service ended the stream"})
            progress.touch()
    except KeyboardInterrupt:
        progress.stop()
        if n is not None:
            try:
                client.cancel(env, n)
            except ServiceError:
                pass
        print("wsgikernel: interrupted; execution %s cancelled" % n, file=sys.stderr)
        return INTERRUPTED
    finally:
        progress.stop()
    if record is None:
        raise ServiceError(502, {"title": "Stream broken",
                                 "detail": "the stream ended before the execution's record"})
    return report(record)


def write_output(event):
    """One streamed output to the matching local stream; rich outputs as text/plain."""
    kind = event.get("output_type")
    if kind == "stream":
        stream = sys.stderr if event.get("name") == "stderr" else sys.stdout
        stream.write(event.get("text", ""))
        stream.flush()
    elif kind == "display_data":
        text = (event.get("data") or {}).get("text/plain")
        if text is not None:
            sys.stdout.write(_ensure_newline(text))
            sys.stdout.flush()


def report(record):
    """The end of a cell: its result on stdout, or its traceback on stderr; exit status."""
    if record.get("status") == "ok":
        text = (record.get("result") or {}).get("text/plain")
        if text is not None:
            sys.stdout.write(_ensure_newline(text))
            sys.stdout.flush()
        return OK
    error = record.get("error") or {}
    lines = error.get("traceback") or ["%s: %s" % (error.get("ename"), error.get("evalue"))]
    sys.stdout.flush()
    sys.stderr.write(_ensure_newline("\n".join(lines)))
    if record.get("reason"):
        sys.stderr.write("(%s: %s)\n" % (record["status"], record["reason"]))
    sys.stderr.flush()
    return USER_ERROR


def _ensure_newline(text):
    return text if text.endswith("\n") else text + "\n"


def _indent(text, width):
    return ("\n" + " " * width).join(text.rstrip("\n").split("\n"))
