"""The browser console's static side (/ui): served without auth, with strict policies.

Fast WebTest checks; tests/test_browser.py drives the page in a real Chromium.
"""

import json
import os
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import webtest

from helpers import ROOT
from wsgikernel import ui

STATIC = ui.STATIC_DIR


def policy(header):
    """'a b; c d' -> {'a': ['b'], 'c': ['d']}"""
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


class Links(HTMLParser):
    """Every tag and attribute of a page, plus inline script/style bodies."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.inline = []
        self._open = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline.append((self._open, data))


def parse(html):
    parser = Links()
    parser.feed(html)
    return parser


# -- the page ------------------------------------------------------------------

def test_the_page_is_served_without_auth_with_its_policy(anon):
    res = anon.get("/ui")
    assert res.status_int == 200
    assert res.headers["Content-Type"] == "text/html; charset=utf-8"
    nonce = re.search(r'<meta name="style-nonce" content="([A-Za-z0-9_-]{22,})">', res.text)
    assert nonce, "the page carries its style nonce"
    assert res.headers["Content-Security-Policy"] == ui.page_policy(nonce.group(1))
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert res.headers["Referrer-Policy"] == "no-referrer"
    assert "<title>wsgikernel</title>" in res.text
    assert 'src="ui/app.js"' in res.text


def test_the_page_policy_allows_only_its_own_scripts_and_styles():
    directives = policy(ui.PAGE_POLICY)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert not any("unsafe" in word or word in ("data:", "https:", "*", "blob:")
                   for key in ("script-src", "style-src", "connect-src", "frame-src")
                   for word in directives[key])


def test_the_page_allows_the_editors_styles_by_a_nonce_of_its_own(anon):
    """CodeMirror puts its theme in a <style> element: the page's policy allows styles with
    that response's nonce (nothing else inline), a new one each time it is served."""
    first, second = anon.get("/ui"), anon.get("/ui")
    nonces = []
    for res in (first, second):
        directives = policy(res.headers["Content-Security-Policy"])
        assert directives["script-src"] == ["'self'"]
        assert len(directives["style-src"]) == 2 and directives["style-src"][0] == "'self'"
        nonces.append(directives["style-src"][1])
        assert nonces[-1] == "'nonce-%s'" % re.search(
            r'<meta name="style-nonce" content="([^"]+)">', res.text).group(1)
    assert nonces[0] != nonces[1]
    other = anon.get("/ui/app.js")  # the page's files keep the nonce-less policy
    assert other.headers["Content-Security-Policy"] == ui.PAGE_POLICY
    assert "nonce" not in ui.PAGE_POLICY


def test_the_page_has_no_inline_script_style_or_handlers(anon):
    page = parse(anon.get("/ui").text)
    assert page.inline == []
    for tag, attrs in page.tags:
        assert "style" not in attrs, (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "script":
            assert attrs.get("src"), attrs
    scripts = [attrs["src"] for tag, attrs in page.tags if tag == "script"]
    styles = [attrs["href"] for tag, attrs in page.tags
              if tag == "link" and attrs.get("rel") == "stylesheet"]
    # the vendored libraries (scripts/build-console.sh), then the page's own
    assert scripts == ["ui/marked.umd.js", "ui/purify.min.js", "ui/codemirror.min.js",
                       "ui/editor.js", "ui/app.js"]
    assert styles == ["ui/style.css"]


def test_head_of_the_page(anon):
    res = anon.head("/ui")
    assert res.status_int == 200 and res.body == b""
    nonce = policy(res.headers["Content-Security-Policy"])["style-src"][1]
    assert res.headers["Content-Security-Policy"] == ui.page_policy(nonce[len("'nonce-"):-1])


def test_the_page_is_also_public_with_auth_off(make_test_app):
    app = webtest.TestApp(make_test_app(token=None))
    assert app.get("/ui").status_int == 200


# -- static files ---------------------------------------------------------------

@pytest.mark.parametrize("name, content_type", [
    ("app.js", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("frame.html", "text/html; charset=utf-8"),
])
def test_static_files_are_served_without_auth(anon, name, content_type):
    res = anon.get("/ui/" + name)
    assert res.status_int == 200
    assert res.headers["Content-Type"] == content_type
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    with open(os.path.join(STATIC, name), "rb") as handle:
        assert res.body == handle.read()


def test_every_shipped_file_has_a_known_type():
    for name in os.listdir(STATIC):
        assert os.path.splitext(name)[1] in ui.TYPES, name


def test_the_script_builds_no_absolute_api_urls():
    with open(os.path.join(STATIC, "app.js"), encoding="utf-8") as handle:
        source = handle.read()
    # API paths are resolved against the page's base (<prefix>/), never from the root.
    assert not re.search(r"""['"`]/(envs|ui|healthz|openapi)""", source)
    assert "new URL('../', SCRIPT_URL)" in source
    # the token goes in a header only
    assert "'Bearer ' + " in source
    assert not re.search(r"""[?&]token=['"]?\s*\+""", source)


# -- the frame for text/html outputs ------------------------------------------------

def test_the_frame_has_its_own_policy(anon):
    res = anon.get("/ui/frame.html")
    assert res.headers["Content-Security-Policy"] == ui.FRAME_POLICY
    directives = policy(res.headers["Content-Security-Policy"])
    # inline scripts and styles run there (pandas, plots) ...
    assert "'unsafe-inline'" in directives["script-src"]
    assert "'unsafe-inline'" in directives["style-src"]
    # ... but only in an opaque origin, framed by this server only, fetching nothing
    assert directives["sandbox"] == ["allow-scripts"]
    assert directives["frame-ancestors"] == ["'self'"]
    assert directives["connect-src"] == ["'none'"]
    assert "'self'" not in directives["script-src"]


def test_the_page_frames_html_in_a_sandbox_without_same_origin():
    with open(os.path.join(STATIC, "app.js"), encoding="utf-8") as handle:
        source = handle.read()
    assert "setAttribute('sandbox', 'allow-scripts')" in source
    code = re.sub(r"(?m)//.*$", "", re.sub(r"/\*.*?\*/", "", source, flags=re.S))
    assert "allow-same-origin" not in code  # mentioned in comments only
    assert "srcdoc" not in source
    assert ".innerHTML" not in source  # kernel output never becomes markup of the page


def test_the_frame_only_listens_to_its_parent():
    with open(os.path.join(STATIC, "frame.html"), encoding="utf-8") as handle:
        source = handle.read()
    assert "event.source !== parentWindow" in source


# -- what is not there ------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/ui/nope.js", "/ui/.hidden", "/ui/..", "/ui/%2e%2e", "/ui/index.html",
    "/ui/app.js%00", "/ui/app.js%00.css", "/ui/..%5capp.js", "/ui/__init__.py",
    "/ui/ui.py", "/ui/APP.JS.", "/ui/" + "a" * 300 + ".js",
])
def test_unknown_files_are_not_found(anon, path):
    res = anon.get(path, expect_errors=True)
    assert res.status_int == 404, path
    assert res.headers["Content-Type"] == "application/problem+json"
    assert b"Traceback" not in res.body


@pytest.mark.parametrize("path", ["/ui/..%2f..%2fsetup.cfg", "/ui/../setup.cfg",
                                  "/ui/static/app.js", "/ui/x/../app.js", "/ui/"])
def test_paths_with_more_segments_are_no_files(anon, testapp, path):
    assert anon.get(path, expect_errors=True).status_int in (401, 404)
    assert testapp.get(path, expect_errors=True).status_int == 404


def test_a_symlink_in_the_static_dir_is_not_followed(anon, monkeypatch, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "real.css").write_text("body {}")
    os.symlink(tmp_path / "secret.txt", tmp_path / "link.css")
    monkeypatch.setattr(ui, "STATIC_DIR", str(tmp_path))
    assert anon.get("/ui/real.css").text == "body {}"
    assert anon.get("/ui/link.css", expect_errors=True).status_int == 404


def test_only_get_and_head(anon):
    res = anon.post("/ui/app.js", expect_errors=True)
    assert res.status_int in (401, 405)


# -- under a mount prefix -----------------------------------------------------------------

def test_everything_the_page_links_works_under_a_mount_prefix(app):
    mounted = webtest.TestApp(app, extra_environ={"SCRIPT_NAME": "/tools/kernel"})
    page = mounted.get("/ui")
    assert page.status_int == 200
    base = "http://127.0.0.1/tools/kernel/ui"
    links = [attrs.get("src") or attrs.get("href") for tag, attrs in parse(page.text).tags
             if tag in ("script", "link") and (attrs.get("src") or attrs.get("href"))]
    links = [link for link in links if not link.startswith("data:")]
    assert len(links) == 6
    for link in links:
        path = urlsplit(urljoin(base, link)).path
        assert path.startswith("/tools/kernel/ui/"), path
        res = mounted.get(path[len("/tools/kernel"):])
        assert res.status_int == 200
    # app.js finds the API at new URL('../', <prefix>/ui/app.js) = <prefix>/
    assert urljoin(urljoin(base, "ui/app.js"), "../") == "http://127.0.0.1/tools/kernel/"
    assert mounted.get("/ui/frame.html").status_int == 200


def test_the_service_index_links_the_console(testapp):
    assert testapp.get("/").json["links"]["ui"].endswith("/ui")


def test_the_vendored_libraries_are_the_pinned_ones_with_their_licenses():
    """scripts/build-console.sh pins each library (version and tarball hash) and copies
    its built file and license; the files here are what it copied."""
    script = open(os.path.join(ROOT, "scripts", "build-console.sh"), encoding="utf-8").read()
    pinned = dict(re.findall(r"^(marked|dompurify) (\S+) [0-9a-f]{64} ", script, re.M))
    assert set(pinned) == {"marked", "dompurify"}, pinned
    for name, banner, license_file, terms in (
            ("marked.umd.js", "marked v%s" % pinned["marked"], "marked.umd.LICENSE.txt",
             "Permission is hereby granted"),  # MIT
            ("purify.min.js", "DOMPurify %s" % pinned["dompurify"], "purify.min.LICENSE.txt",
             "Apache License")):  # DOMPurify is Apache-2.0 or MPL-2.0: we take Apache-2.0
        with open(os.path.join(STATIC, name), encoding="utf-8") as handle:
            assert banner in handle.read(2000), name
        with open(os.path.join(STATIC, license_file), encoding="utf-8") as handle:
            assert terms in handle.read(), license_file


def test_the_editor_bundle_carries_the_license_of_every_package_in_it():
    """CodeMirror is bundled by esbuild from scripts/console/ (exact versions in
    package.json, integrity hashes in package-lock.json); its license file names each
    bundled package at the locked version, with that package's terms."""
    folder = os.path.join(ROOT, "scripts", "console")
    with open(os.path.join(folder, "package.json"), encoding="utf-8") as handle:
        wanted = json.load(handle)
    with open(os.path.join(folder, "package-lock.json"), encoding="utf-8") as handle:
        locked = json.load(handle)["packages"]
    for group in ("dependencies", "devDependencies"):
        for name, version in wanted[group].items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)  # exact pins
            assert locked["node_modules/" + name]["version"] == version, name
    assert all(entry.get("integrity", "").startswith("sha512-")
               for path, entry in locked.items() if path)
    with open(os.path.join(STATIC, "codemirror.min.LICENSE.txt"), encoding="utf-8") as handle:
        text = handle.read()
    named = dict(re.findall(r"^== (\S+) (\S+) \(MIT\) ==$", text, re.M))
    for name in ("@codemirror/view", "@codemirror/state", "@codemirror/lang-python",
                 "@lezer/python", "style-mod"):
        assert named[name] == locked["node_modules/" + name]["version"], name
    assert "esbuild" not in named  # the tool, not part of what is shipped
    assert text.count("Permission is hereby granted") == len(named)
