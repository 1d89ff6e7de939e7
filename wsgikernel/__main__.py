"""Command line: ``python -m wsgikernel COMMAND`` (also the ``wsgikernel`` console script).

``serve`` starts the service (the flags of scripts/serve.py); every other
command is a client of a running service (see cli.py).
"""

import sys

USAGE = """usage: wsgikernel [--url URL] [--token TOKEN] COMMAND [ARGS]

  serve [flags]             start the service (wsgikernel serve --help for every flag)
  envs                      list environments
  create ENV                create an environment (idempotent)
  rm ENV                    delete an environment
  exec ENV [CODE | -]       run code in ENV (created if absent); stdin when CODE is - or absent
  run ENV FILE.py           run a file as one cell
  complete ENV CODE         completions at the end of CODE
  history ENV               In/Out of every execution
  notebook ENV > out.ipynb  the history as a Jupyter notebook

--url and --token default to $WSGIKERNEL_URL (http://127.0.0.1:8080) and $WSGIKERNEL_TOKEN.
exec/run exit 0 when the cell ran, 1 when it raised, 2 when the service refused."""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "serve":
        from .server import main as serve_main
        return serve_main(argv[1:])
    from .cli import main as cli_main
    try:
        return cli_main(argv)
    except BrokenPipeError:  # `wsgikernel history ENV | head`: stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
