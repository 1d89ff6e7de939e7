"""Every curl example in docs/API.md runs, in order, against a live server.

The examples share one state dir, so the ones that create ``demo`` serve the
ones after.  Each must exit 0 and answer 2xx, or the status its
``# expect: NNN`` comment names; when the documented output is a ```json
block and the real answer is a JSON object too, both must have the same keys
(values such as times and pids differ from run to run).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from helpers import HANG_GUARD, ROOT, LiveServer

API_MD = os.path.join(ROOT, "docs", "API.md")
DOC_URL = "http://127.0.0.1:8080"
STATUS_MARK = "\n@@status="
FENCE = re.compile(r"^```(\w*)\s*$")


class Example:
    def __init__(self, command, expect, line):
        self.command, self.expect, self.line = command, expect, line
        self.output = None  # (language, text) of the block documenting its answer

    def __repr__(self):
        return "<API.md:%d %s>" % (self.line, self.command[:60])


def parse_blocks(text):
    """[(language, body lines, first line number)] of the fenced blocks."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        found = FENCE.match(line)
        if current is None and found:
            current = (found.group(1), [], number + 1)
        elif current is not None and line.strip() == "```":
            blocks.append(current)
            current = None
        elif current is not None:
            current[1].append(line)
    assert current is None, "unterminated code block at line %d" % current[2]
    return blocks


def parse_examples(text):
    """The curl commands of the ```sh blocks, with their expected status and output block."""
    examples = []
    blocks = parse_blocks(text)
    for index, (language, lines, first) in enumerate(blocks):
        if language != "sh":
            continue
        expect, pending, found = None, "", []
        for offset, line in enumerate(lines):
            line = pending + line
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            mark = re.match(r"#\s*expect:\s*(\d{3})", line.strip())
            if mark:
                expect = int(mark.group(1))
            elif line.startswith("curl "):
                found.append(Example(line, expect, first + offset))
                expect = None
        if found and index + 1 < len(blocks) and blocks[index + 1][0] in ("json", "text"):
            following = blocks[index + 1]
            found[-1].output = (following[0], "\n".join(following[1]))
        examples.extend(found)
    return examples


def run_example(example, url, token, cwd):
    """(curl exit status, HTTP status, body text) of one example against ``url``."""
    command = example.command.replace(DOC_URL, url.rstrip("/"))
    command += " -w '%s%%{http_code}'" % STATUS_MARK.replace("\n", "\\n")
    env = dict(os.environ, WSGIKERNEL_TOKEN=token)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=HANG_GUARD)
    body, _, status = result.stdout.rpartition(STATUS_MARK)
    return result.returncode, int(status or 0), body, result.stderr


def same_shape(documented, real):
    """Both JSON objects with the same keys (or not comparable): the doc shows the real shape."""
    try:
        documented, real = json.loads(documented), json.loads(real)
    except ValueError:
        return True
    if not (isinstance(documented, dict) and isinstance(real, dict)):
        return True
    return set(documented) == set(real)


def test_api_md_has_an_example_for_every_route(app):
    text = open(API_MD, encoding="utf-8").read()
    examples = parse_examples(text)
    assert len(examples) >= 40
    for route in app.routes:
        heading = re.compile(r"^#+ .*`%s %s`" % (route.method, re.escape(route.pattern)), re.M)
        assert heading.search(text) or any(
            example_matches(e.command, route) for e in examples), route


def example_matches(command, route):
    method = re.search(r"-X (\w+)", command)
    method = method.group(1) if method else ("POST" if re.search(r" (-d|--data|--json)",
                                                                 command) else "GET")
    if " -I " in command:
        method = "HEAD"
    url = re.search(r"%s(/[^\s\"?']*)" % re.escape(DOC_URL), command)
    path = url.group(1) if url else "/"
    pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route.pattern)) + "$"
    return method in (route.method, "HEAD" if route.method == "GET" else None) and \
        re.match(pattern, path)


@pytest.mark.slow
def test_every_curl_example_in_api_md_works():
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    examples = parse_examples(open(API_MD, encoding="utf-8").read())
    state_dir = tempfile.mkdtemp(prefix="wk-doc-")
    work = tempfile.mkdtemp(prefix="wk-doc-cwd-")
    try:
        with LiveServer("--pool-size", "0", "--quiet", state_dir=state_dir) as live:
            for example in examples:
                code, status, body, err = run_example(example, live.url, live.token, work)
                assert code == 0, (example, code, err)
                if example.expect is not None:
                    assert status == example.expect, (example, status, body)
                else:
                    assert 200 <= status < 300, (example, status, body)
                if example.output and example.output[0] == "json":
                    assert same_shape(example.output[1], body), (example, body)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def test_docs_link_to_each_other():
    docs = os.path.join(ROOT, "docs")
    for name in ("API.md", "security.md", "compat.md", "client.md"):
        text = open(os.path.join(docs, name), encoding="utf-8").read()
        for target in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]*)?\)", text):
            assert os.path.exists(os.path.join(docs, target)), (name, target)
