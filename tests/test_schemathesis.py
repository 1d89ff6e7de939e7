"""Fuzz the live service from its own /openapi.json with schemathesis (pinned 3.39.16).

A real ``scripts/serve.py`` with tight limits (``--max-envs 8`` so generated
creates cannot spawn unbounded kernels, ``--max-timeout``/``--default-timeout
5`` so no generated cell runs long, ``--default-wait 2``) is hit by the
schemathesis CLI in a subprocess: fixed seed (``--hypothesis-derandomize``),
a bounded number of examples per operation, and the checks
not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance and response_headers_conformance.  It must find no
5xx, no undocumented status, no response that contradicts its schema.

Two runs: everything but ``DELETE /envs/{id}`` first, so the documented
examples (env ``demo``, created here) reach a real kernel instead of a 404;
then the delete.  Streaming answers (``application/x-ndjson``) are checked for
status and content type only: schemathesis validates bodies of JSON media types
and an NDJSON stream is not one JSON document (tests/test_client.py covers the
events line by line).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from helpers import LiveServer

if importlib.util.find_spec("schemathesis") is None:  # the test extra pins 3.39.16
    pytest.skip("schemathesis is not installed", allow_module_level=True)

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")
SERVER_ARGS = ("--max-envs", "8", "--max-timeout", "5", "--default-timeout", "5",
               "--default-wait", "2", "--kill-grace", "1", "--pool-size", "0", "--quiet")
RUN_TIMEOUT = 150  # seconds for one schemathesis run: a hang guard, not a speed claim


@pytest.fixture
def server():
    state_dir = tempfile.mkdtemp(prefix="wk-st-")
    try:
        with LiveServer(*SERVER_ARGS, state_dir=state_dir) as live:
            yield live
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def schemathesis_run(live, *filters):
    """(exit status, output) of one ``st run`` against ``live``."""
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", live.url + "openapi.json",
           "--experimental=openapi-3.1", "--validate-schema=true",
           "-H", "Authorization: Bearer " + live.token, "-c", CHECKS,
           "--hypothesis-derandomize", "--hypothesis-max-examples=25",
           "--hypothesis-suppress-health-check=all",
           "--generation-with-security-parameters=false",
           "--request-timeout=20000", "--sanitize-output=false", "--show-trace",
           "--code-sample-style=curl", *filters]
    env = dict(os.environ, NO_COLOR="1",
               SCHEMATHESIS_HOSTS_PATH=os.path.join(live.state_dir, "hosts.toml"))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            env=env, stdin=subprocess.DEVNULL)
    return result.returncode, result.stdout + result.stderr


def operations(live):
    status, _, document = live.request("GET", "/openapi.json")
    assert status == 200
    return [(method, path) for path, item in document["paths"].items() for method in item]


def test_fuzzing_from_the_description_finds_nothing(server):
    status, _, _ = server.request("PUT", "/envs/demo")  # the documented example id
    assert status == 201
    everything = operations(server)
    deletes = sum(1 for method, _ in everything if method == "delete")
    code, output = schemathesis_run(server, "--exclude-method=DELETE")
    assert code == 0, output
    assert "Collected API operations: %d" % (len(everything) - deletes) in output, output
    code, output = schemathesis_run(server, "--include-method=DELETE")
    assert code == 0, output
    assert "Collected API operations: %d" % deletes in output, output
    assert server.proc.poll() is None, "the server died under fuzzing"
