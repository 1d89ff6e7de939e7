"""Command line: ``python -m wsgikernel serve [flags]`` (client commands come later)."""

import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: wsgikernel serve [--host H] [--port P] [...]\n"
              "       wsgikernel serve --help   for every flag")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        from .server import main as serve_main
        return serve_main(rest)
    print("wsgikernel: unknown command %r (try: serve)" % command, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
