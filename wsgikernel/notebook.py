"""An environment's history as an nbformat v4 notebook (.ipynb), with no dependency.

Each history record becomes a code cell with its outputs and execution count;
a markdown cell marks every point where the session number changes (a
restart, or a restore of a checkpoint), because the namespace after it is not
the one before, and a fork's notebook starts with the env and cell it was
forked from.  Output
objects are already nbformat v4 shaped (the execution record keeps them that
way); only the keys nbformat allows are copied.
"""

import platform

NBFORMAT_MINOR = 5  # 4.5: cells carry an "id"

_OUTPUT_KEYS = {
    "stream": ("output_type", "name", "text"),
    "execute_result": ("output_type", "execution_count", "data", "metadata"),
    "display_data": ("output_type", "data", "metadata"),
    "error": ("output_type", "ename", "evalue", "traceback"),
}


def _output(output):
    keys = _OUTPUT_KEYS.get(output.get("output_type"))
    if keys is None:
        return None
    cleaned = {key: output.get(key) for key in keys}
    if "metadata" in cleaned and not isinstance(cleaned["metadata"], dict):
        cleaned["metadata"] = {}
    if "data" in cleaned and not isinstance(cleaned["data"], dict):
        cleaned["data"] = {}
    return cleaned


def _code_cell(record):
    outputs = [o for o in map(_output, record.get("outputs") or ()) if o is not None]
    return {"cell_type": "code", "id": "cell-%d" % record["execution_count"],
            "execution_count": record["execution_count"], "metadata": {},
            "source": record.get("code") or "", "outputs": outputs}


def _restart_cell(session, index):
    return {"cell_type": "markdown", "id": "restart-%d-%d" % (session, index), "metadata": {},
            "source": "*Kernel restarted: session %d, fresh namespace.*" % session}


def _note_cell(name, text):
    return {"cell_type": "markdown", "id": name, "metadata": {}, "source": text}


def build_notebook(env_id, records, forked_from=None):
    cells, session = [], None
    if forked_from:
        cells.append(_note_cell("forked-from", "*Forked from environment `%s` after its cell "
                                "%s: the cells before are in its notebook.*" % (
                                    forked_from.get("env"), forked_from.get("execution_count"))))
    for index, record in enumerate(records):
        if record.get("status") in ("queued", "running"):
            continue  # not finished yet: history holds only its queued record
        restored = record.get("restored")
        if restored:  # the namespace is the checkpoint's: say so, instead of a code cell
            cells.append(_note_cell("restore-%d" % index, "*Restored checkpoint `%s`: the "
                                    "namespace as it was after cell %s (session %s).*" % (
                                        restored.get("checkpoint"),
                                        restored.get("execution_count"),
                                        record.get("session"))))
            session = record.get("session")
            continue
        if session is not None and record.get("session") != session:
            cells.append(_restart_cell(record.get("session") or 0, index))
        session = record.get("session")
        cells.append(_code_cell(record))
    return {
        "nbformat": 4, "nbformat_minor": NBFORMAT_MINOR,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "version": platform.python_version()},
            "wsgikernel": {"env": env_id},
        },
        "cells": cells,
    }
