"""Debian's headless Chromium for the console tests, driven by Selenium without Selenium
Manager (the system browser and driver are named explicitly)."""

import contextlib
import importlib.util
import os
import shutil
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60.0  # seconds: hang guard for anything the page does
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-dev-shm-usage", "--window-size=1280,1000")


# A cell's editor is CodeMirror's (wsgikernel/static/editor.js): its text is read and set
# through CodeMirror's public API, found from the cell's .cm-editor node.
EDITOR = "CM.EditorView.findFromDOM(arguments[0].querySelector('.cm-editor'))"
GET_CODE = "return %s.state.doc.toString();" % EDITOR
SET_CODE = ("var view = %s; view.dispatch({changes: {from: 0, to: view.state.doc.length,"
            " insert: arguments[1]}, selection: {anchor: arguments[1].length}}); view.focus();"
            % EDITOR)
CODES = ("return Array.from(document.querySelectorAll('#cells .cell .cm-editor')).map("
         "function (n) { return CM.EditorView.findFromDOM(n).state.doc.toString(); });")


def chromium_problem():
    """Why the browser tests cannot run here, or None."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return ("needs Debian's chromium and chromium-driver (%s, %s): run "
                "scripts/install-system-deps.sh" % (CHROMIUM, CHROMEDRIVER))
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium (the test extra)"
    return None


@contextlib.contextmanager
def chromium():
    """A headless Chromium with a profile and a download folder of its own
    (``browser.downloads``), quit in ``finally``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="wk-chromium-")
    downloads = tempfile.mkdtemp(prefix="wk-downloads-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=" + profile)
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.downloads = downloads
    try:
        browser.set_page_load_timeout(WAIT)
        browser.set_script_timeout(WAIT)
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)
