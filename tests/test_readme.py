"""The README's curl session runs as written, top to bottom, against a real server.

Each curl line of the "A curl session" section is run in order (``localhost:8080``
pointed at a live ``scripts/serve.py``; the token exported as the banner says).
Every one must exit 0 with a 2xx answer; where the README says what comes back
(a JSON comment, a ``-> 202 ..., Location: ...`` line) the real answer must say
the same.  The tutorial's block runs against a second server started with
``--no-auth``, as the README tells its readers to.
"""

import json
import os
import re
import shutil
import tempfile

import pytest

from helpers import ROOT, LiveServer
from test_docs import Example, parse_blocks, run_example

README = os.path.join(ROOT, "README.md")
README_URL = "localhost:8080"


def session_blocks():
    """The ```sh blocks of the README's "A curl session" section, as lists of lines."""
    text = open(README, encoding="utf-8").read()
    start = text.index("## A curl session")
    end = text.index("\n## ", start + 1)
    return [lines for language, lines, _ in parse_blocks(text[start:end]) if language == "sh"]


def commands(lines):
    """[(curl command, the comment lines after it)] of one block."""
    found = []
    for line in lines:
        if line.startswith("curl "):
            found.append((line, []))
        elif line.strip().startswith("#") and found:
            found[-1][1].append(line.strip())
    return found


def run_readme_line(command, live, cwd):
    command = re.sub(r"\s+#\s.*$", "", command)  # the README's trailing comment
    command = command.replace(README_URL, live.url.rstrip("/").replace("http://", ""))
    command = 'H="Authorization: Bearer $WSGIKERNEL_TOKEN"; ' + command
    return run_example(Example(command, None, 0), live.url, live.token or "", cwd)


def check_documented(command, comments, body):
    """What the README says the command prints, against what it printed."""
    said = re.search(r"\s#\s+(\{.*?\})", command)
    if said:
        assert json.loads(said.group(1)) == json.loads(body), (command, body)
    for comment in comments:
        found = re.match(r"#\s*->\s*(\d{3})[^,]*,\s*Location:\s*(\S+)", comment)
        if found:
            status, location = found.groups()
            head = body.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")
            assert head[0].startswith("HTTP/1.") and (" %s " % status) in head[0], body
            assert "Location: %s" % location in head, (comment, head)


@pytest.mark.slow
def test_the_readme_curl_session_runs_as_written():
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    blocks = session_blocks()
    assert len(blocks) >= 4, blocks
    *rest_blocks, tutorial = blocks
    assert any("--no-auth" in line for line in tutorial), tutorial
    state, work = tempfile.mkdtemp(prefix="wk-readme-"), tempfile.mkdtemp(prefix="wk-rd-cwd-")
    try:
        with LiveServer("--pool-size", "0", "--quiet", state_dir=state) as live:
            ran = []
            for lines in rest_blocks:
                for command, comments in commands(lines):
                    code, status, body, err = run_readme_line(command, live, work)
                    assert code == 0, (command, code, err)
                    assert 200 <= status < 300, (command, status, body)
                    check_documented(command, comments, body)
                    ran.append((command, body))
            assert len(ran) >= 8, ran
            outputs = {command: body for command, body in ran}
            long_poll = next(b for c, b in ran if "?wait=25" in c)
            assert json.loads(long_poll)["result"] == {"text/plain": "42"}, long_poll
            attach = next(b for c, b in ran if "?stream=1" in c).strip().splitlines()
            assert json.loads(attach[-1])["event"] == "record"
            assert json.loads(attach[-1])["execution_count"] == 3
            assert any('"stdout":"0\\n1\\n2\\n3\\n4\\n"' in body for body in outputs.values())
            assert live.request("GET", "/envs")[2] == {"envs": []}  # the session cleaned up
        with LiveServer("--pool-size", "0", "--quiet", "--no-auth", state_dir=state,
                        token=None) as open_server:
            answers = [run_readme_line(command, open_server, work)
                       for command, _ in commands(tutorial)]
            assert [json.loads(body) for _, _, body, _ in answers] == [
                {"envs": ["1"]}, {"message": "hello world\n"}], answers
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
