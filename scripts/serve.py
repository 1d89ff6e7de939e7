#!/usr/bin/env python3
"""Start wsgikernel from a checkout: ``python3 scripts/serve.py [--port 8080] [--no-auth]``.

Needs nothing installed: it puts the checkout on sys.path and hands the command
line to ``wsgikernel.server.main``.  ``--help`` lists every flag.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsgikernel.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="serve.py"))
