"""The environment id rule, in one place: the registry enforces it, the HTTP layer
validates and publishes it (``params.env_id``, ``routes.ENV_ID``, OpenAPI's pattern).

An id is a directory name under ``<state_dir>/envs/``: 1-64 characters of
A-Z a-z 0-9 _ . -, never starting with '.' (the registry's own entries,
``.deleted-*``, start with one, and so do ``.`` and ``..``).
"""

import re

ENV_ID_RULE = r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}"  # the one rule; OpenAPI's pattern too
ENV_ID_RULE_TEXT = ("an environment id is 1-64 characters of A-Z a-z 0-9 _ . - "
                    "and does not start with '.'")
ENV_ID = re.compile(ENV_ID_RULE + r"\Z")


def env_id(value):
    """``value`` if it is an environment id, else ValueError (a converter's contract)."""
    if not isinstance(value, str) or not ENV_ID.match(value):
        raise ValueError(ENV_ID_RULE_TEXT)
    return value
