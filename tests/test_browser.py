"""The browser console in a real headless Chromium, against a live scripts/serve.py.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/install-system-deps.sh``
installs them; .ci/run calls it).  Driven with Selenium without Selenium
Manager: the system browser and driver are named explicitly.  Every wait is an
explicit, generous WebDriverWait (a hang guard, never a speed claim).
"""

import json
import os
import shutil
import signal
import tempfile
import threading
from wsgiref.simple_server import make_server

import pytest

from browser_helpers import CODES, EDITOR, GET_CODE, SET_CODE, WAIT, chromium, chromium_problem
from helpers import ROOT, TOKEN, LiveServer, wait_for

if chromium_problem():
    pytest.skip(chromium_problem(), allow_module_level=True)

from selenium.common.exceptions import (NoSuchElementException,  # noqa: E402
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Real processes (a server, its kernels, a browser): out of the per-Python core runs.
pytestmark = pytest.mark.slow

ARTIFACTS = os.path.join(ROOT, "test-artifacts")

# A tiny valid PNG built in the kernel with the standard library only (40 x 20, red).
PNG_CELL = r"""import struct, zlib
def _chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
class Red:
    def _repr_png_(self):
        raw = b''.join(b'\x00' + b'\xff\x00\x00' * 40 for _ in range(20))
        return (b'\x89PNG\r\n\x1a\n'
                + _chunk(b'IHDR', struct.pack('>IIBBBBB', 40, 20, 8, 2, 0, 0, 0))
                + _chunk(b'IDAT', zlib.compress(raw)) + _chunk(b'IEND', b''))
Red()"""

# HTML whose script runs in its frame and probes what it can reach.
PROBE_CELL = r"""class Probe:
    def _repr_html_(self):
        return '''<p id="probe">script did not run</p>
<script>
var report = {origin: String(window.origin)};
try { parent.document.title = 'pwned'; report.title = 'changed'; }
catch (e) { report.title = e.name; }
try { report.storage = JSON.stringify(parent.sessionStorage); }
catch (e) { report.storage = e.name; }
try { report.own_storage = String(window.sessionStorage.length); }
catch (e) { report.own_storage = e.name; }
try { report.parent_url = parent.location.href; }
catch (e) { report.parent_url = e.name; }
document.getElementById('probe').textContent = 'frame script ran: ' + JSON.stringify(report);
parent.postMessage({probe: report}, '*');
</script>'''
Probe()"""


@pytest.fixture(scope="module")
def server():
    state = tempfile.mkdtemp(prefix="wk-")
    os.chmod(state, 0o700)
    # quiet: nobody reads its log pipe; auto checkpoints: the Undo button has states to go to
    live = LiveServer("--quiet", "--auto-checkpoints", "3", state_dir=state)
    try:
        with live:
            yield live
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def driver():
    with chromium() as browser:
        yield browser


class Page:
    """The console page in the browser, with the few moves the tests need."""

    def __init__(self, driver, server):
        self.driver = driver
        self.server = server

    def wait(self, condition, message, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05, ignored_exceptions=(
                NoSuchElementException, StaleElementReferenceException)).until(
                lambda d: condition(), message)
        except TimeoutException:
            raise AssertionError("timed out waiting for %s; the page shows:\n%s"
                                 % (message, self.snapshot())) from None

    def snapshot(self):
        """What the page shows, for a failure message."""
        try:
            return self.js("return [document.getElementById('status').textContent,"
                           " document.getElementById('env-title').textContent + ' ' +"
                           " document.getElementById('env-state').textContent,"
                           " document.getElementById('cells').innerText].join('\\n')")
        except Exception as exc:  # the page itself may be the problem
            return "(no snapshot: %r)" % exc

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def open(self, env=None, token=True):
        url = self.server.url + "ui"
        if token:
            url += "?token=" + self.server.token
        if env:
            url += "#env=" + env
        self.driver.get(url)
        if token:
            self.wait(lambda: self.js("return document.body.dataset.connected") == "true",
                      "the page to connect")
        if env:
            self.wait_env_open(env)
        return self

    def wait_env_open(self, env):
        self.wait(lambda: self.js(
            "return document.getElementById('env-title').textContent === arguments[0] && "
            "document.getElementById('cells').dataset.loaded === 'true'", env),
            "env %s to open" % env)

    def make_env(self, env):
        status, _, body = self.server.request("PUT", "/envs/" + env)
        assert status in (200, 201), body
        return env

    def cells(self):
        return self.driver.find_elements(By.CSS_SELECTOR, "#cells .cell")

    def editor(self, cell):
        """The element a user types into: CodeMirror's content."""
        return cell.find_element(By.CSS_SELECTOR, ".cm-content")

    def code(self, cell):
        return self.js(GET_CODE, cell)

    def set_code(self, cell, code):
        """Put code in a cell's editor (typing would go through auto-indent)."""
        self.js(SET_CODE, cell, code)

    def run(self, code, keys=(Keys.SHIFT, Keys.ENTER)):
        """Run code in the last cell with Shift-Enter; the cell it ran in."""
        cell = self.cells()[-1]
        self.set_code(cell, code)
        self.editor(cell).send_keys(*keys)
        return cell

    def text(self, cell, selector=".cell-output"):
        return self.js("return Array.from(arguments[0].querySelectorAll(arguments[1]))"
                       ".map(function (n) { return n.textContent; }).join('\\n')", cell, selector)

    def wait_text(self, cell, needle, selector=".cell-output"):
        self.wait(lambda: needle in self.text(cell, selector),
                  "%r in %s" % (needle, selector))

    def running(self, cell):
        return "running" in cell.get_attribute("class").split()

    def wait_done(self, cell):
        self.wait(lambda: not self.running(cell) and
                  cell.find_element(By.CSS_SELECTOR, ".prompt-in").text != "In [*]:",
                  "the cell to finish")

    def env_state(self):
        return self.js("return document.getElementById('env-state').textContent")

    def listed_state(self, env):
        return self.js("var li = document.querySelector('#env-list li[data-env=\"' + "
                       "arguments[0] + '\"] .env-state'); return li && li.textContent", env)


@pytest.fixture
def page(driver, server):
    return Page(driver, server)


def test_main_flow_with_rich_output(page, driver, server):
    page.open()
    assert "token" not in driver.current_url  # taken from the URL, then removed from it
    driver.find_element(By.ID, "new-env-id").send_keys("main", Keys.ENTER)
    page.wait_env_open("main")
    page.wait(lambda: page.listed_state("main") in ("starting", "idle"), "main listed")

    cell = page.run("print('hi'); 1+1")
    page.wait_text(cell, "2", ".output-result .output-body")
    page.wait_done(cell)
    assert page.text(cell, ".output-stream.stdout") == "hi\n"
    assert cell.find_element(By.CSS_SELECTOR, ".prompt-in").text == "In [1]:"
    assert cell.find_element(By.CSS_SELECTOR, ".output-result .prompt-out").text == "Out [1]:"
    assert driver.switch_to.active_element == page.editor(page.cells()[-1])  # moved on

    cell = page.run("import sys\nprint('to stderr', file=sys.stderr)\n1/0")
    page.wait_text(cell, "ZeroDivisionError: division by zero", ".output-error")
    assert page.text(cell, ".output-stream.stderr") == "to stderr\n"
    assert "Traceback (most recent call last)" in page.text(cell, ".output-error")
    assert page.text(cell, ".output-error .error-name").startswith("ZeroDivisionError")

    cell = page.run(PNG_CELL)
    page.wait(lambda: cell.find_elements(By.CSS_SELECTOR, "img.output-image"), "the PNG")
    image = cell.find_element(By.CSS_SELECTOR, "img.output-image")
    assert image.get_attribute("src").startswith("data:image/png;base64,iVBORw0KGgo")
    page.wait(lambda: page.js("return arguments[0].complete && arguments[0].naturalWidth",
                              image) == 40, "the PNG to decode")

    cell = page.run("class Pic:\n    def _repr_svg_(self):\n"
                    "        return '<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"30\" "
                    "height=\"10\"><rect width=\"30\" height=\"10\" fill=\"teal\"/></svg>'\n"
                    "Pic()")
    page.wait(lambda: cell.find_elements(By.CSS_SELECTOR, "img.output-image"), "the SVG")
    svg = cell.find_element(By.CSS_SELECTOR, "img.output-image")
    assert svg.get_attribute("src").startswith("data:image/svg+xml")
    assert not cell.find_elements(By.CSS_SELECTOR, "svg")  # never inlined in the page
    page.wait(lambda: page.js("return arguments[0].naturalWidth", svg) == 30, "the SVG to load")

    cell = page.run("class Table:\n    def _repr_html_(self):\n"
                    "        return '<table><tr><th>x</th><th>y</th></tr>'"
                    " + ''.join('<tr><td>%d</td><td>%d</td></tr>' % (i, i * i) "
                    "for i in range(4)) + '</table>'\nTable()")
    frame = page.wait(lambda: cell.find_element(By.CSS_SELECTOR, "iframe.output-html"),
                      "the HTML frame")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    page.wait(lambda: page.js("return parseInt(arguments[0].style.height || '0')", frame) > 60,
              "the frame to size itself to the table")
    driver.switch_to.frame(frame)
    try:
        page.wait(lambda: "9" in driver.find_element(By.TAG_NAME, "table").text, "the table")
    finally:
        driver.switch_to.default_content()

    cell = page.run("class J:\n    def _repr_json_(self):\n        return {'a': [1, 2]}\nJ()")
    page.wait_text(cell, '"a": [', ".output-json")

    # The whole page in one picture: a window as tall as the cells (within reason).
    os.makedirs(ARTIFACTS, exist_ok=True)
    size = driver.get_window_size()
    height = page.js("return document.getElementById('main').scrollHeight + "
                     "document.getElementById('topbar').offsetHeight")
    driver.set_window_size(size["width"], min(max(height + 140, size["height"]), 4000))
    try:
        page.js("document.getElementById('main').scrollTop = 0")
        driver.save_screenshot(os.path.join(ARTIFACTS, "ui.png"))
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_output_streams_in_while_the_cell_runs(page, tmp_path):
    env = page.make_env("stream")
    page.open(env)
    flag = str(tmp_path / "finish")
    cell = page.run("import os, time\n"
                    "for i in range(3):\n"
                    "    print('line', i, flush=True)\n"
                    "    if i == 0:\n"
                    "        for _ in range(6000):  # until the test says so (300 s at most)\n"
                    "            if os.path.exists(%r):\n"
                    "                break\n"
                    "            time.sleep(0.05)\n"
                    "    time.sleep(0.1)\n"
                    "'done'" % flag)
    page.wait_text(cell, "line 0", ".output-stream.stdout")
    # The first line is on screen while the cell is still running.
    assert page.running(cell)
    assert "line 2" not in page.text(cell)
    assert cell.find_element(By.CSS_SELECTOR, ".prompt-in").text == "In [*]:"
    open(flag, "w").close()
    page.wait_text(cell, "'done'", ".output-result")
    page.wait_done(cell)
    assert page.text(cell, ".output-stream.stdout") == "line 0\nline 1\nline 2\n"


def test_html_output_runs_in_its_frame_but_cannot_reach_the_page(page, driver, server):
    env = page.make_env("isolation")
    page.open(env)
    page.js("window.__probes = []; window.addEventListener('message', function (e) {"
            " if (e.data && e.data.probe) { window.__probes.push(e.data.probe); } });")
    title = driver.title
    cell = page.run(PROBE_CELL)
    page.wait(lambda: page.js("return window.__probes.length") > 0, "the frame's report")
    report = page.js("return window.__probes[0]")
    assert report == {"origin": "null", "title": "SecurityError", "storage": "SecurityError",
                      "own_storage": "SecurityError", "parent_url": "SecurityError"}, report
    assert driver.title == title != "pwned"
    assert page.js("return sessionStorage.getItem('wsgikernel.token')") == server.token
    assert server.token not in json.dumps(page.js("return window.__probes"))

    frame = cell.find_element(By.CSS_SELECTOR, "iframe.output-html")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    assert frame.get_attribute("src") == server.url + "ui/frame.html"
    driver.switch_to.frame(frame)
    try:
        text = driver.find_element(By.ID, "probe").text
    finally:
        driver.switch_to.default_content()
    assert text.startswith("frame script ran: "), text
    page.wait(lambda: page.js("return parseInt(arguments[0].style.height || '0')", frame) > 0,
              "the frame to report its height")


def test_tab_completes_and_shift_tab_shows_help(page, driver):
    env = page.make_env("complete")
    page.open(env)
    cell = page.run("def myfunc(a, b=2):\n    'Add things up.'\n    return a + b\n"
                    "myfunc_two = 2")
    page.wait_done(cell)

    cell = page.cells()[-1]
    editor = page.editor(cell)
    editor.send_keys("myf", Keys.TAB)
    page.wait(lambda: cell.find_elements(By.CSS_SELECTOR, ".completer li"), "the pick list")
    choices = [li.text for li in cell.find_elements(By.CSS_SELECTOR, ".completer li")]
    assert choices == ["myfunc", "myfunc_two"]
    assert unnamed_controls(page, driver) == []  # the list and its options are named
    assert page.code(cell) == "myfunc"  # the common prefix is filled in
    editor.send_keys(Keys.ARROW_DOWN, Keys.ENTER)
    page.wait(lambda: page.code(cell) == "myfunc_two", "the pick")
    assert not cell.find_elements(By.CSS_SELECTOR, ".completer")

    page.set_code(cell, "myfunc(")
    editor.send_keys(Keys.END, Keys.SHIFT, Keys.TAB)
    page.wait(lambda: cell.find_elements(By.CSS_SELECTOR, ".inspector"), "the help pop-up")
    help_text = page.text(cell, ".inspector")
    assert "(a, b=2)" in help_text and "Add things up." in help_text
    editor.send_keys(Keys.ESCAPE)
    page.wait(lambda: not cell.find_elements(By.CSS_SELECTOR, ".inspector"), "help to close")

    # Enter on an incomplete statement: a newline with the indent, not a run.
    page.set_code(cell, "for i in range(2):")
    editor.send_keys(Keys.END, Keys.ENTER)
    page.wait(lambda: page.code(cell) == "for i in range(2):\n    ", "indent")
    editor.send_keys("print(i)", Keys.ENTER)
    assert page.code(cell).startswith("for i in range(2):\n    print(i)\n")
    assert not page.running(cell) and page.text(cell) == ""
    # ... and after a complete statement the kernel says: no indent (the line's would be wrong).
    page.set_code(cell, "total = (1 +\n         2)")
    editor.send_keys(Keys.END, Keys.ENTER)
    page.wait(lambda: page.code(cell) == "total = (1 +\n         2)\n",
              "is_complete to drop the indent")
    # Tab at the start of a line indents.
    page.set_code(cell, "")
    editor.send_keys(Keys.TAB, "x")
    assert page.code(cell) == "    x"


def test_the_editor_highlights_indents_matches_brackets_and_has_several_cursors(page, driver):
    env = page.make_env("editing")
    page.open(env)
    cell = page.cells()[-1]
    editor = page.editor(cell)
    # Typed, not set: Enter indents after the colon (is_complete agrees), the braces match.
    editor.send_keys("def twice(x):", Keys.ENTER)
    page.wait(lambda: page.code(cell) == "def twice(x):\n    ", "the indent")
    editor.send_keys("return [x, x]")
    assert page.code(cell) == "def twice(x):\n    return [x, x]"
    words = page.js("return Array.from(arguments[0].querySelectorAll('.tok-keyword'))"
                    ".map(function (n) { return n.textContent; })", cell)
    assert words == ["def", "return"], words  # Python highlighting
    page.wait(lambda: len(cell.find_elements(By.CSS_SELECTOR, ".cm-matchingBracket")) == 2,
              "the brackets at the caret matched")
    assert [n.text for n in cell.find_elements(By.CSS_SELECTOR, ".cm-matchingBracket")] == \
        ["[", "]"]
    screenshot(driver, "editor")
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    page.wait_done(cell)

    # Several cursors: select a name, Ctrl-D twice takes its next two occurrences.
    cell = page.cells()[-1]
    editor = page.editor(cell)
    page.set_code(cell, "n = 1\nn = 2\nn = 3")
    editor.send_keys(Keys.CONTROL, Keys.HOME)
    editor.send_keys(Keys.SHIFT, Keys.ARROW_RIGHT)
    editor.send_keys(Keys.CONTROL, "d")
    editor.send_keys(Keys.CONTROL, "d")
    assert page.js("return %s.state.selection.ranges.length" % EDITOR, cell) == 3
    editor.send_keys("k")
    assert page.code(cell) == "k = 1\nk = 2\nk = 3"
    editor.send_keys(Keys.CONTROL, "z")  # one undo step takes back all three
    assert page.code(cell) == "n = 1\nn = 2\nn = 3"
    editor.send_keys(Keys.ESCAPE)  # several cursors first become one ...
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    page.wait_done(cell)
    assert cell.find_element(By.CSS_SELECTOR, ".prompt-in").text == "In [2]:"

    # A markdown cell's editor is plain text: no Python colours.
    cell = page.cells()[-1]
    page.set_code(cell, "def is a word here")
    page.editor(cell).send_keys(Keys.ESCAPE)
    driver.switch_to.active_element.send_keys("m")
    page.wait(lambda: "markdown" in cell.get_attribute("class").split(), "a markdown cell")
    driver.switch_to.active_element.send_keys(Keys.ENTER)  # edit it again
    assert not cell.find_elements(By.CSS_SELECTOR, ".tok-keyword")
    # CodeMirror's theme is a <style> with the page's nonce: the policy refused nothing.
    refused = [entry for entry in driver.get_log("browser")
               if "Content Security Policy" in entry["message"]]
    assert refused == [], refused


def test_a_cell_can_be_interrupted(page):
    env = page.make_env("interrupt")
    page.open(env)
    cell = page.run("import time\nprint('sleeping', flush=True)\ntime.sleep(100)\n"
                    "print('woke up')")
    page.wait_text(cell, "sleeping", ".output-stream")
    button = cell.find_element(By.CSS_SELECTOR, ".cell-interrupt")
    page.wait(lambda: button.is_enabled() and button.is_displayed(), "the interrupt button")
    button.click()
    page.wait_text(cell, "KeyboardInterrupt", ".output-error")
    page.wait_done(cell)
    assert "woke up" not in page.text(cell)
    assert not cell.find_element(By.CSS_SELECTOR, ".cell-interrupt").is_displayed()
    cell = page.run("'still alive'")
    page.wait_text(cell, "'still alive'", ".output-result")


def test_a_cell_asks_for_input_in_a_box_and_a_password_masked(page, driver):
    env = page.make_env("asks")
    page.open(env)
    cell = page.run("import getpass\nname = input('Name: ')\nsecret = getpass.getpass()\n"
                    "print('hi', name, len(secret))")
    field = page.wait(lambda: cell.find_element(By.CSS_SELECTOR, ".input-request input"),
                      "the input box")
    assert field.get_attribute("type") == "text"
    assert "Name:" in page.text(cell, ".input-request")
    field.send_keys("Ada", Keys.ENTER)
    page.wait(lambda: cell.find_element(By.CSS_SELECTOR, ".input-request input").get_attribute(
        "type") == "password", "the password box")
    cell.find_element(By.CSS_SELECTOR, ".input-request input").send_keys("pw123", Keys.ENTER)
    page.wait_text(cell, "hi Ada 5", ".output-stream")
    page.wait_done(cell)
    assert not cell.find_elements(By.CSS_SELECTOR, ".input-request")
    assert "Name: Ada" in page.text(cell, ".output-stream")
    assert "pw123" not in page.text(cell)


def test_update_display_and_clear_output_change_outputs_in_place(page, driver):
    env = page.make_env("updates")
    page.open(env)
    first = page.run("import time\nh = display('step 0', display_id='bar')\n"
                     "for i in range(1, 4):\n    time.sleep(0.2)\n    h.update('step %d' % i)")
    page.wait_text(first, "'step 3'")
    page.wait_done(first)
    assert len(first.find_elements(By.CSS_SELECTOR, ".output-row")) == 1
    second = page.run("display.__self__.update_display('from below', display_id='bar')\n"
                      "print('gone')\ndisplay.__self__.clear_output()\nprint('kept')")
    page.wait_text(first, "'from below'")  # an earlier cell's output, updated in place
    page.wait_text(second, "kept")
    page.wait_done(second)
    assert "gone" not in page.text(second)


def test_reloading_the_page_keeps_the_cells(page, driver):
    env = page.make_env("reload")
    page.open(env)
    # Ctrl-Enter runs in place: the focus stays, no cell is added.
    first = page.run("x = 20\nprint('x is', x)", keys=(Keys.CONTROL, Keys.ENTER))
    page.wait_done(first)
    assert len(page.cells()) == 1
    assert driver.switch_to.active_element == page.editor(first)
    driver.find_element(By.ID, "btn-add-cell").click()
    page.wait(lambda: len(page.cells()) == 2, "the added cell")
    second = page.run("x * 2 + 2")
    page.wait_text(second, "42", ".output-result")
    page.set_code(page.cells()[-1], "draft = 'not run yet'")

    driver.refresh()
    page.wait(lambda: page.js("return document.body.dataset.connected") == "true", "reconnect")
    page.wait_env_open(env)
    assert driver.current_url == page.server.url + "ui#env=reload"
    cells = page.cells()
    codes = [page.code(c) for c in cells]
    assert codes == ["x = 20\nprint('x is', x)", "x * 2 + 2", "draft = 'not run yet'"]
    assert page.text(cells[0], ".output-stream") == "x is 20\n"
    assert page.text(cells[1], ".output-result .output-body") == "42"
    assert [c.find_element(By.CSS_SELECTOR, ".prompt-in").text for c in cells] == \
        ["In [1]:", "In [2]:", "In [ ]:"]


def test_a_dead_kernel_is_shown_as_dead_and_can_be_restarted(page, driver):
    env = page.make_env("dies")
    page.open(env)
    page.wait(lambda: page.env_state() == "idle", "idle")
    cell = page.run("import os\nos._exit(1)")
    page.wait(lambda: page.env_state() == "dead", "the env shown dead")
    page.wait(lambda: page.listed_state(env) == "dead", "the env listed dead")
    page.wait_done(cell)
    assert "kernel died" in page.text(cell, ".output-note")
    assert not driver.find_element(By.ID, "env-message").get_attribute("hidden")
    cell = page.run("'too late'")
    page.wait_text(cell, "dead", ".output-note")  # the server's 409, said in the cell

    driver.find_element(By.ID, "btn-restart").click()
    cell = page.run("'back'")  # waits in the page for the restart to finish
    page.wait_text(cell, "'back'", ".output-result")
    page.wait(lambda: page.env_state() == "idle" and page.listed_state(env) == "idle",
              "the env shown alive again")


def test_undo_goes_back_a_cell_and_fork_opens_a_copy(page, driver):
    env = page.make_env("branchy")
    page.open(env)
    cell = page.run("rows = [1, 2, 3]")
    page.wait_done(cell)
    cell = page.run("rows.clear()")
    page.wait_done(cell)
    driver.find_element(By.ID, "btn-undo").click()
    page.wait(lambda: "state after cell 1" in page.js(
        "return document.getElementById('status').textContent"), "the undo to be reported")
    cell = page.run("len(rows)")
    page.wait_text(cell, "3", ".output-result")
    driver.find_element(By.ID, "btn-fork").click()
    page.wait(lambda: page.js("return document.getElementById('env-title').textContent")
              not in ("branchy", ""), "the fork to open")
    forked = page.js("return document.getElementById('env-title').textContent")
    page.wait_env_open(forked)
    page.wait(lambda: "forked from branchy" in page.js(
        "return document.getElementById('env-info').textContent"), "the fork's origin shown")
    cell = page.run("rows.append(4); rows")
    page.wait_text(cell, "[1, 2, 3, 4]", ".output-result")
    status, _, source = page.server.request("POST", "/envs/branchy/execute",
                                            {"code": "rows"})
    assert status == 200 and source["result"]["text/plain"] == "[1, 2, 3]", source


def test_the_notebook_downloads(page, driver):
    env = page.make_env("export")
    page.open(env)
    cell = page.run("print('in the notebook')")
    page.wait_done(cell)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": driver.downloads})
    driver.find_element(By.ID, "btn-notebook").click()
    target = os.path.join(driver.downloads, "export.ipynb")
    wait_for(lambda: os.path.exists(target) and not [
        n for n in os.listdir(driver.downloads) if n.endswith(".crdownload")],
        timeout=WAIT, message="the notebook download")
    with open(target, encoding="utf-8") as handle:
        notebook = json.load(handle)
    assert notebook["nbformat"] == 4
    assert notebook["cells"][0]["source"] in ("print('in the notebook')",
                                              ["print('in the notebook')"])


def test_the_page_asks_for_the_token_and_never_puts_it_in_a_url(page, driver, server):
    page.open(token=False)
    page.js("sessionStorage.clear()")
    driver.refresh()
    dialog = driver.find_element(By.ID, "token-dialog")
    page.wait(dialog.is_displayed, "the token dialog")
    field = driver.find_element(By.ID, "token-input")
    field.send_keys("wrong-token", Keys.ENTER)
    page.wait(lambda: "not valid" in driver.find_element(By.ID, "token-error").text,
              "the refusal")
    field.clear()
    field.send_keys(server.token, Keys.ENTER)
    page.wait(lambda: page.js("return document.body.dataset.connected") == "true", "connect")
    assert not dialog.is_displayed()
    assert page.js("return sessionStorage.getItem('wsgikernel.token')") == server.token

    # Create, use and delete an env with a generated id through the page.
    before = set(page.js("return Array.from(document.querySelectorAll('#env-list li'))"
                         ".map(function (li) { return li.dataset.env; })"))
    driver.find_element(By.ID, "btn-new-env").click()
    page.wait(lambda: page.js("return document.getElementById('cells').dataset.loaded")
              == "true", "the new env")
    env = driver.find_element(By.ID, "env-title").text
    assert env and env not in before
    cell = page.run("6 * 7")
    page.wait_text(cell, "42", ".output-result")
    delete = driver.find_element(By.ID, "btn-delete")
    delete.click()
    delete.click()  # the second click confirms
    page.wait(lambda: page.listed_state(env) is None, "the env to leave the list")
    assert server.request("GET", "/envs/" + env)[0] == 404

    urls = page.js("return performance.getEntriesByType('resource').map(function (e) "
                   "{ return e.name; }).concat([location.href])")
    assert urls and not [u for u in urls if server.token in u or "token=" in u], urls


def test_many_cells_queued_at_once_all_show_their_output(page):
    env = page.make_env("queue")
    page.open(env)
    cells = []
    for i in range(6):  # more than the page streams at once: the rest queue and follow
        cells.append(page.run("import time\ntime.sleep(0.2)\nprint('cell %d')\n%d" % (i, i)))
    for i, cell in enumerate(cells):
        page.wait_text(cell, "cell %d" % i, ".output-stream")
        page.wait_text(cell, "%d" % i, ".output-result .output-body")
        page.wait_done(cell)
    numbers = [c.find_element(By.CSS_SELECTOR, ".prompt-in").text for c in cells]
    assert numbers == ["In [%d]:" % (i + 1) for i in range(6)]


class Mounted:
    """The app under a URL prefix, as a front server would mount it (SCRIPT_NAME)."""

    def __init__(self, app, prefix):
        self.app = app
        self.prefix = prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"outside the mount"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
        environ["PATH_INFO"] = path[len(self.prefix):]
        return self.app(environ, start_response)


def test_the_page_works_under_a_mount_prefix(driver):
    from wsgikernel import make_app
    from wsgikernel.httpserver import HTTP11Server
    from wsgikernel.server import RequestHandler

    state = tempfile.mkdtemp(prefix="wk-")
    app = make_app(state_dir=state, token=TOKEN, pool_size=0, kill_grace=1)
    handler = type("QuietHandler", (RequestHandler,), {"quiet": True})
    httpd = make_server("127.0.0.1", 0, Mounted(app, "/tools/kernel"),
                        server_class=HTTP11Server, handler_class=handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    origin = "http://127.0.0.1:%d" % httpd.server_port
    base = origin + "/tools/kernel/"
    try:
        driver.get(base + "ui?token=" + TOKEN)
        page = Page(driver, None)
        page.wait(lambda: page.js("return document.body.dataset.connected") == "true",
                  "the mounted page to connect")
        driver.find_element(By.ID, "new-env-id").send_keys("mounted", Keys.ENTER)
        page.wait_env_open("mounted")
        cell = page.run("print('under a prefix')\n"
                        "class H:\n    def _repr_html_(self):\n"
                        "        return '<i id=x>frame</i><script>"
                        "document.getElementById(\"x\").textContent = \"framed\"</script>'\n"
                        "H()")
        page.wait_text(cell, "under a prefix", ".output-stream")
        frame = page.wait(lambda: cell.find_element(By.CSS_SELECTOR, "iframe.output-html"),
                          "the frame")
        assert frame.get_attribute("src") == base + "ui/frame.html"
        driver.switch_to.frame(frame)
        try:
            page.wait(lambda: driver.find_element(By.ID, "x").text == "framed", "frame script")
        finally:
            driver.switch_to.default_content()
        # Everything the page fetched was under the prefix (outside it there is only 404).
        urls = page.js("return performance.getEntriesByType('resource')"
                       ".map(function (e) { return e.name; })")
        assert urls and all(u.startswith(base) for u in urls if u.startswith(origin)), urls
        assert any(u.startswith(base + "envs/mounted/execute") for u in urls), urls
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.close()
        shutil.rmtree(state, ignore_errors=True)


# -- kernel state made visible, layout (issue 20) --------------------------------------

def supervisor_of(server, env):
    with open(os.path.join(server.state_dir, "envs", env, "env.json")) as handle:
        return json.load(handle)["supervisor_pid"]


def screenshot(driver, name):
    """Save what the page shows for a reviewer; its path goes to the test's output."""
    folder = os.environ.get("WSGIKERNEL_SCREENSHOTS") or os.path.join(
        tempfile.gettempdir(), "wsgikernel-screenshots")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".png")
    driver.save_screenshot(path)
    print("screenshot:", path)
    return path


def test_a_stopped_env_says_why_and_restarts_from_its_banner(page, driver, server):
    env = page.make_env("halted")
    page.open(env)
    page.wait(lambda: page.env_state() == "idle", "idle")
    cell = page.run("x = 41")
    page.wait_done(cell)
    os.kill(supervisor_of(server, env), signal.SIGTERM)  # what a stop of the host does
    page.wait(lambda: page.env_state() == "stopped", "the env shown stopped")
    banner = driver.find_element(By.ID, "env-message")
    page.wait(lambda: "stopped" in banner.text and "SIGTERM" in banner.text, "why, said")
    assert "POST /envs" not in banner.text  # words for people, not the API's
    screenshot(driver, "stopped-banner")
    assert unnamed_controls(page, driver) == []
    driver.find_element(By.ID, "banner-restart").click()
    page.wait(lambda: page.env_state() == "idle", "the env running again")
    page.wait(lambda: banner.get_attribute("hidden") is not None, "the banner gone")
    cell = page.run("'fresh' if 'x' not in dir() else 'old'")
    page.wait_text(cell, "'fresh'", ".output-result")


def test_a_divider_marks_each_restart_and_survives_a_reload(page, driver):
    env = page.make_env("divided")
    page.open(env)
    page.wait(lambda: page.env_state() == "idle", "idle")
    page.wait_done(page.run("a = 1"))
    driver.find_element(By.ID, "btn-restart").click()
    page.wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".restart-divider")) == 1,
              "a divider at the restart")
    cell = page.run("a")
    page.wait_text(cell, "NameError")

    def order():
        return page.js("return Array.from(document.querySelectorAll('#cells > *'))"
                       ".map(function (n) { return n.classList.contains('restart-divider') ?"
                       " 'divider' : (CM.EditorView.findFromDOM(n.querySelector('.cm-editor'))"
                       ".state.doc.toString() || 'empty'); })")

    assert order()[:3] == ["a = 1", "divider", "a"], order()
    assert "session 2" in driver.find_element(By.CSS_SELECTOR, ".restart-divider").text
    screenshot(driver, "restart-divider")
    page.open(env)  # from the history alone
    assert order()[:3] == ["a = 1", "divider", "a"], order()
    assert len(driver.find_elements(By.CSS_SELECTOR, ".restart-divider")) == 1


def test_the_env_list_poll_never_overlaps_itself(page, driver):
    """A listing slower than the poll interval: one in flight at a time (setInterval
    piled them up)."""
    page.open()
    page.js("""
        window.__listings = {inFlight: 0, most: 0, count: 0};
        var real = window.fetch;
        window.fetch = function (url, options) {
          var listing = /\\/envs$/.test(String(url)) && (!options || !options.method ||
                                                        options.method === 'GET');
          if (!listing) { return real.apply(this, arguments); }
          var seen = window.__listings;
          seen.inFlight += 1; seen.count += 1; seen.most = Math.max(seen.most, seen.inFlight);
          var args = arguments;
          return new Promise(function (resolve) { setTimeout(resolve, 3000); })
            .then(function () { return real.apply(window, args); })
            .finally(function () { seen.inFlight -= 1; });
        };""")
    page.wait(lambda: page.js("return window.__listings.count") >= 2,
              "two polls under a slow listing", timeout=20)
    assert page.js("return window.__listings.most") == 1


def test_a_narrow_window_stacks_the_list_above_the_cells(page, driver):
    env = page.make_env("narrow")
    size = driver.get_window_size()
    try:
        driver.set_window_size(420, 900)
        page.open(env)
        page.wait_done(page.run("print('fits')"))
        info = page.js("return document.getElementById('env-info').textContent")
        assert "1 run" in info, info  # at once, not at the next listing
        box = page.js("var s = document.getElementById('sidebar').getBoundingClientRect(),"
                      " m = document.getElementById('main').getBoundingClientRect();"
                      " return [s.width, s.bottom, m.top, m.width, window.innerWidth,"
                      " document.documentElement.scrollWidth];")
        sidebar_width, sidebar_bottom, main_top, main_width, inner, scroll_width = box
        assert sidebar_width <= inner and main_width <= inner, box
        assert sidebar_bottom <= main_top + 1, box  # above, not beside
        assert scroll_width <= inner + 1, box  # nothing wider than the window
        screenshot(driver, "narrow-420px")
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_dark_mode_follows_the_system(page, driver):
    env = page.make_env("darkly")
    try:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        page.open(env)
        page.wait_done(page.run("1/0"))
        background = page.js("return getComputedStyle(document.body).backgroundColor")
        channels = [int(c) for c in background[background.index("(") + 1:-1].split(",")[:3]]
        assert sum(channels) < 100, background  # dark, not white
        screenshot(driver, "dark-mode")
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def cell_codes(page):
    return page.js(CODES)


def cell_op(page, cell, op):
    page.js("arguments[0].querySelector('.cell-op[data-op=\"' + arguments[1] + '\"]').click()",
            cell, op)


def fill(page, codes):
    """The page's cells hold ``codes`` (and nothing ran)."""
    for index, code in enumerate(codes):
        if index:
            page.driver.find_element(By.ID, "btn-add-cell").click()
        page.set_code(page.cells()[-1], code)


def test_cells_move_delete_undo_insert_and_run_all_in_order(page, driver):
    env = page.make_env("ops")
    page.open(env)
    fill(page, ["order = ['a']", "order.append('b')", "order.append('c')"])
    cells = page.cells()
    cell_op(page, cells[1], "delete")
    assert cell_codes(page) == ["order = ['a']", "order.append('c')"]
    driver.find_element(By.ID, "btn-undo-delete").click()
    assert cell_codes(page) == ["order = ['a']", "order.append('b')", "order.append('c')"]
    cell_op(page, page.cells()[2], "up")
    assert cell_codes(page) == ["order = ['a']", "order.append('c')", "order.append('b')"]
    cell_op(page, page.cells()[0], "below")
    page.set_code(page.cells()[1], "order.append('new')")
    cell_op(page, page.cells()[0], "above")
    assert cell_codes(page)[0] == "" and len(page.cells()) == 5
    driver.find_element(By.ID, "btn-add-cell").click()
    page.set_code(page.cells()[-1], "order")
    driver.find_element(By.ID, "btn-run-all").click()
    last = page.cells()[-1]
    page.wait_text(last, "['a', 'new', 'c', 'b']", ".output-result")
    prompts = page.js("return Array.from(document.querySelectorAll('#cells .cell .prompt-in'))"
                      ".map(function (p) { return p.textContent; })")
    assert prompts == ["In [ ]:", "In [1]:", "In [2]:", "In [3]:", "In [4]:", "In [5]:"], prompts
    assert "ran " in page.text(last, ".cell-meta")  # its time, from the record
    cell_op(page, last, "clear")
    assert page.text(last) == ""
    screenshot(driver, "cell-operations")


def test_command_mode_keys_and_the_help_panel(page, driver):
    env = page.make_env("keys")
    page.open(env)
    cell = page.cells()[-1]
    page.set_code(cell, "first = 1")
    page.editor(cell).send_keys(Keys.ESCAPE)
    assert page.js("return document.activeElement === arguments[0]", cell)
    active = driver.switch_to.active_element
    active.send_keys("b")  # a cell below, selected
    assert len(page.cells()) == 2
    driver.switch_to.active_element.send_keys("d")
    driver.switch_to.active_element.send_keys("d")
    assert cell_codes(page) == ["first = 1"]
    driver.switch_to.active_element.send_keys("z")
    assert len(page.cells()) == 2
    driver.switch_to.active_element.send_keys("d")
    driver.switch_to.active_element.send_keys("d")
    page.open(env)  # the delete was saved: the reload brings back one cell, not two
    assert len(page.cells()) == 1, cell_codes(page)
    cell = page.cells()[-1]
    page.set_code(cell, "first = 1")
    page.editor(cell).send_keys(Keys.CONTROL, Keys.ENTER)
    page.wait_done(cell)
    page.editor(cell).send_keys(Keys.ESCAPE)
    driver.switch_to.active_element.send_keys("y")  # it is code already: nothing changes
    assert cell.find_element(By.CSS_SELECTOR, ".prompt-in").text == "In [1]:"
    driver.switch_to.active_element.send_keys("m")  # it ran: it stays code
    assert "markdown" not in cell.get_attribute("class").split()
    driver.switch_to.active_element.send_keys("b")
    driver.switch_to.active_element.send_keys("?")
    help_panel = driver.find_element(By.ID, "help-panel")
    assert help_panel.get_attribute("hidden") is None and "Command mode" in help_panel.text
    screenshot(driver, "shortcuts-help")
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert help_panel.get_attribute("hidden") is not None
    page.cells()[0].click()
    page.editor(page.cells()[0]).send_keys(Keys.ALT, Keys.ARROW_DOWN)
    assert cell_codes(page)[-1] == "first = 1"


def test_restart_and_run_all_stops_at_the_first_error(page, driver):
    env = page.make_env("rerun")
    page.open(env)
    fill(page, ["x = 1", "1/0", "print('never')"])
    driver.find_element(By.ID, "btn-restart-run-all").click()
    third = page.cells()[2]
    page.wait_done(third)
    page.wait_text(page.cells()[1], "ZeroDivisionError")
    assert "never" not in page.text(third, ".output-stream")
    page.wait_text(third, "Not run: a cell above failed")
    # nothing had run before the restart: no divider
    assert len(driver.find_elements(By.CSS_SELECTOR, ".restart-divider")) == 0


def test_ansi_colours_and_long_outputs(page, driver):
    env = page.make_env("colours")
    page.open(env)
    cell = page.run("print('\\x1b[31mred\\x1b[0m plain \\x1b[1;32mbold green\\x1b[0m')")
    page.wait_text(cell, "plain")
    assert "\x1b" not in page.text(cell) and "[31m" not in page.text(cell)
    red = cell.find_element(By.CSS_SELECTOR, ".output-stream .ansi-fg-1")
    assert red.text == "red"
    assert cell.find_element(By.CSS_SELECTOR, ".ansi-fg-2.ansi-bold").text == "bold green"
    odd = page.run("print('\x1b[38;5;34mx256\x1b[0m')")
    page.wait_text(odd, "x256")
    assert not odd.find_elements(By.CSS_SELECTOR, ".ansi-bold, .ansi-fg-4")  # 5;34 is no code
    bar = page.run("print('\x1b[32mfoo\x1b[0m\\rba')")  # a progress bar's rewrite
    page.wait_text(bar, "bao")
    assert "32m" not in page.text(bar), page.text(bar)
    long = page.run("for i in range(500): print('line', i)")
    page.wait_done(long)
    pre = long.find_element(By.CSS_SELECTOR, "pre.output-stream")
    assert "collapsed" in pre.get_attribute("class")
    more = long.find_element(By.CSS_SELECTOR, ".show-more")
    assert "501 lines" in more.text
    more.click()
    assert "collapsed" not in pre.get_attribute("class")
    assert "line 499" in pre.text  # all of it, selectable


def test_the_variables_panel_follows_the_cells(page, driver):
    env = page.make_env("vars")
    page.open(env)
    driver.find_element(By.ID, "btn-variables").click()
    page.wait_done(page.run("alpha = [1, 2, 3]\nbeta = 'text'"))
    page.wait(lambda: page.js("return document.querySelectorAll('#variables-body tr').length")
              == 2, "two variables listed")
    rows = page.js("return Array.from(document.querySelectorAll('#variables-body tr'))"
                   ".map(function (r) { return Array.from(r.cells).map(function (c) {"
                   " return c.textContent; }); })")
    assert ["alpha", "list", "[1, 2, 3]", "3"] in rows, rows
    driver.find_element(By.CSS_SELECTOR, "#variables-body tr[data-name='alpha']").click()
    detail = driver.find_element(By.ID, "variable-detail")
    page.wait(lambda: "list" in detail.text, "what alpha is")
    page.wait_done(page.run("del beta"))
    page.wait(lambda: page.js("return document.querySelectorAll('#variables-body tr').length")
              == 1, "beta gone from the panel")
    screenshot(driver, "variables-panel")


def test_a_notebook_opens_into_cells_that_have_not_run(page, driver, tmp_path):
    env = page.make_env("opened")
    page.open(env)
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {},
         "source": ["# Title\n", "<script>window.__pwned = 1</script>",
                    "<img src=x onerror=\"window.__pwned = 2\">"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 7, "outputs": [],
         "source": ["opened = 'yes'\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 8, "outputs": [],
         "source": "opened"}]}
    path = tmp_path / "small.ipynb"
    path.write_text(json.dumps(notebook))
    driver.find_element(By.ID, "file-open").send_keys(str(path))
    page.wait(lambda: "opened = 'yes'\n" in cell_codes(page), "the notebook's cells")
    assert cell_codes(page)[1:3] == ["opened = 'yes'\n", "opened"]
    markdown = page.cells()[0]
    assert "markdown" in markdown.get_attribute("class").split()
    assert markdown.find_element(By.CSS_SELECTOR, ".markdown-rendered h1").text == "Title"
    html = markdown.find_element(By.CSS_SELECTOR, ".markdown-rendered").get_attribute("innerHTML")
    assert "<script" not in html and "onerror" not in html, html
    assert page.js("return window.__pwned") is None
    prompts = page.js("return Array.from(document.querySelectorAll("
                      "'#cells .cell:not(.markdown) .prompt-in'))"
                      ".map(function (p) { return p.textContent; })")
    assert set(prompts) == {"In [ ]:"}  # nothing ran
    driver.find_element(By.ID, "btn-run-all").click()
    page.wait_text(page.cells()[2], "'yes'", ".output-result")
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not json")
    driver.find_element(By.ID, "file-open").send_keys(str(bad))
    page.wait(lambda: "not a notebook" in driver.find_element(By.ID, "status").text,
              "a clear refusal")


def test_markdown_cells_render_sanitised_and_go_into_the_notebook(page, driver):
    env = page.make_env("prose")
    page.open(env)
    page.wait_done(page.run("answer = 42"))
    cell = page.cells()[-1]
    page.set_code(cell, "# Findings\n\nThe *answer* is **42**; see "
                        "[docs](https://example.org).\n\n<script>window.__md = 1</script>"
                        "<img src=x onerror=\"window.__md = 2\">"
                        "<div id=\"help-panel\">fake</div><input id=\"token-input\">"
                        "<a href=\"javascript:window.__md = 3\">bad link</a>")
    page.editor(cell).send_keys(Keys.ESCAPE)
    driver.switch_to.active_element.send_keys("m")
    assert "markdown" in cell.get_attribute("class").split()
    page.editor(cell).send_keys(Keys.SHIFT, Keys.ENTER)  # renders, never reaches the kernel
    rendered = cell.find_element(By.CSS_SELECTOR, ".markdown-rendered")
    page.wait(lambda: rendered.is_displayed(), "the markdown rendered")
    assert rendered.find_element(By.TAG_NAME, "h1").text == "Findings"
    assert rendered.find_element(By.TAG_NAME, "em").text == "answer"
    assert rendered.find_element(By.TAG_NAME, "strong").text == "42"
    html = rendered.get_attribute("innerHTML")
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html, html
    assert page.js("return window.__md") is None
    assert page.js("return document.getElementById('help-panel').closest('#cells')") is None
    assert page.js("return document.querySelector('#cells input')") is None  # no controls
    link = rendered.find_element(By.CSS_SELECTOR, "a[href='https://example.org']")
    assert link.get_attribute("rel") == "noopener noreferrer"
    screenshot(driver, "markdown-cell")
    env_info = page.js("return document.getElementById('env-info').textContent")
    assert "1 run" in env_info, env_info  # the markdown cell ran nothing

    # the download: the server's history with the page's markdown cell where it stands
    status, _, served = page.server.request("GET", "/envs/%s/notebook" % env)
    assert status == 200 and [c["cell_type"] for c in served["cells"]] == ["code"]
    merged = driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        var original = URL.createObjectURL;
        URL.createObjectURL = function (blob) {
          URL.createObjectURL = original;
          blob.text().then(function (text) { done(JSON.parse(text)); });
          return original.call(URL, blob);
        };
        document.getElementById('btn-notebook').click();""")
    kinds = [c["cell_type"] for c in merged["cells"]]
    assert kinds == ["code", "markdown"], kinds
    assert merged["cells"][1]["source"].startswith("# Findings")
    page.open(env)  # a reload keeps the markdown cell (the tab's drafts), rendered
    page.wait(lambda: page.js("return !!document.querySelector('.cell.markdown h1')"),
              "the markdown cell after a reload")


def test_cells_not_run_keep_their_place_among_the_history_across_a_reload(page, driver):
    env = page.make_env("places")
    page.open(env)
    first = page.run("a = 1")
    page.wait_done(first)
    second = page.run("b = 2")
    page.wait_done(second)
    cell_op(page, second, "above")  # between the two cells that ran
    page.set_code(page.cells()[1], "## Between")
    page.editor(page.cells()[1]).send_keys(Keys.ESCAPE)
    driver.switch_to.active_element.send_keys("m")
    page.editor(page.cells()[1]).send_keys(Keys.SHIFT, Keys.ENTER)
    cell_op(page, page.cells()[0], "above")  # a code draft above everything
    page.set_code(page.cells()[0], "top = 0")
    page.set_code(page.cells()[-1], "last = 3")  # the page's own empty cell at the end
    assert cell_codes(page) == ["top = 0", "a = 1", "## Between", "b = 2", "last = 3"]

    page.open(env)
    page.wait(lambda: len(page.cells()) == 5, "the history and the drafts")
    assert cell_codes(page) == ["top = 0", "a = 1", "## Between", "b = 2", "last = 3"]
    assert "markdown" in page.cells()[2].get_attribute("class").split()
    assert [c.find_element(By.CSS_SELECTOR, ".prompt-in").text for c in page.cells()] == \
        ["In [ ]:", "In [1]:", "", "In [2]:", "In [ ]:"]


CONTROLS = ("button, input:not([type=file]), select, textarea, a[href], [contenteditable=true],"
            " [role=button], [role=option], [role=dialog], [role=toolbar], [role=listbox]")


def unnamed_controls(page, driver):
    """The shown controls whose accessible name (Chromium's own computation) is empty or
    only symbols: a screen reader would say nothing useful."""
    bad = []
    for node in driver.find_elements(By.CSS_SELECTOR, CONTROLS):
        if node.is_displayed():
            name = node.accessible_name or ""
            if not any(ch.isalpha() for ch in name):
                bad.append((node.tag_name, node.get_attribute("id") or node.get_attribute("class"),
                            name))
    return bad


def test_every_control_has_a_name_and_the_page_works_from_the_keyboard(page, driver):
    page.open()
    active = driver.switch_to.active_element
    for _ in range(20):  # Tab from the top of the page to the new-env field
        if active.get_attribute("id") == "new-env-id":
            break
        active.send_keys(Keys.TAB)
        active = driver.switch_to.active_element
    assert active.get_attribute("id") == "new-env-id"
    active.send_keys("keyboard", Keys.ENTER)
    page.wait_env_open("keyboard")
    page.wait(lambda: "cm-content" in (driver.switch_to.active_element.get_attribute("class")
                                       or ""), "the focus in the cell's editor")
    driver.switch_to.active_element.send_keys("x = 6 * 7", Keys.ENTER, "x",
                                              Keys.SHIFT, Keys.ENTER)
    cell = page.cells()[0]
    page.wait_text(cell, "42", ".output-result")
    assert unnamed_controls(page, driver) == []

    # Esc: command mode on the new cell; K selects the cell above, Tab leaves it for
    # its own controls (nobody is trapped in an editor), and Enter edits it again.
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    assert driver.switch_to.active_element == page.cells()[-1]
    driver.switch_to.active_element.send_keys("k")
    assert driver.switch_to.active_element == cell
    assert unnamed_controls(page, driver) == []  # the cell's toolbar shows on focus
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    assert driver.switch_to.active_element == page.editor(cell)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    driver.switch_to.active_element.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("data-op") == "up"

    # ? opens the shortcuts as a dialog; Esc closes it and gives the focus back.
    cell.send_keys(Keys.ESCAPE)  # WebDriver focuses the cell itself
    assert driver.switch_to.active_element == cell
    driver.switch_to.active_element.send_keys("?")
    dialog = driver.find_element(By.ID, "help-box")
    page.wait(lambda: dialog.is_displayed(), "the shortcuts")
    assert unnamed_controls(page, driver) == []
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    page.wait(lambda: not dialog.is_displayed(), "the shortcuts to close")
    assert driver.switch_to.active_element == cell

    # The variables panel opens from the keyboard and names its rows.
    variables = driver.find_element(By.ID, "btn-variables")
    variables.send_keys(Keys.ENTER)
    assert variables.get_attribute("aria-expanded") == "true"
    panel = driver.find_element(By.ID, "variables-panel")
    page.wait(lambda: "int" in panel.text, "the variables")
    assert unnamed_controls(page, driver) == []
