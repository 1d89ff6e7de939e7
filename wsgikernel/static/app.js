/* The wsgikernel browser console: a notebook-like client of the public HTTP API.
 *
 * Plain browser JavaScript, no dependencies, no build step.  Every URL is
 * computed relative to this script's own address (<prefix>/ui/app.js), so the
 * page works wherever the service is mounted.  The token comes from ?token=
 * (then removed from the address bar) or from the token dialog, is kept in
 * sessionStorage and is only ever sent in the Authorization header.
 *
 * Kernel output is data, never code for this page: text goes in with
 * textContent, images as data: URLs in <img> (SVG too, never inlined), and
 * text/html only inside a sandboxed <iframe> (ui/frame.html, allow-scripts
 * without allow-same-origin) fed with postMessage.
 */
(function () {
  'use strict';

  // -- where things are ----------------------------------------------------

  var SCRIPT_URL = document.currentScript ? document.currentScript.src : location.href;
  var BASE = new URL('../', SCRIPT_URL);  // <prefix>/, whatever the prefix
  var FRAME_URL = new URL('ui/frame.html', BASE).href;
  var TOKEN_KEY = 'wsgikernel.token';
  var DRAFTS_KEY = 'wsgikernel.drafts.';
  var POLL_MS = 2000;
  var LONG_OUTPUT_LINES = 200;  // a longer stream is shown collapsed, with "Show all"
  var MAX_FRAME_HEIGHT = 4000;
  var MAX_STREAMS = 3;  // browsers allow ~6 connections per host: keep some for the rest
  var INDENT = '    ';

  var token = '';
  var authOk = false;
  var envs = new Map();  // id -> env object, from GET /envs
  var view = null;  // the EnvView on screen
  var pollTimer = null;

  function $(id) { return document.getElementById(id); }

  function unfinished(record) {
    return record.status === 'queued' || record.status === 'running' ||
      record.status === 'waiting_input';
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function button(className, text, title) {
    var node = el('button', className, text);
    node.type = 'button';
    if (title) { node.title = title; node.setAttribute('aria-label', title); }
    return node;
  }

  // -- the token -------------------------------------------------------------

  function takeTokenFromUrl() {
    var url = new URL(location.href);
    if (!url.searchParams.has('token')) { return; }
    var given = url.searchParams.get('token');
    if (given) { sessionStorage.setItem(TOKEN_KEY, given); }
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
  }

  function showTokenDialog(message) {
    authOk = false;
    $('token-dialog').hidden = false;
    var error = $('token-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('token-input').focus();
  }

  // -- the API -----------------------------------------------------------------

  function ApiError(status, title, detail, body) {
    this.name = 'ApiError';
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.body = body;
    this.message = detail || title || ('HTTP ' + status);
  }
  ApiError.prototype = Object.create(Error.prototype);

  function apiUrl(path) { return new URL(path, BASE).href; }

  function envPath(id, rest) { return 'envs/' + encodeURIComponent(id) + (rest || ''); }

  function authHeaders(extra, withToken) {
    var headers = Object.assign({}, extra || {});
    var useToken = withToken === undefined ? token : withToken;
    if (useToken) { headers.Authorization = 'Bearer ' + useToken; }
    return headers;
  }

  async function problem(response) {
    var body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    var title = body && body.title ? body.title : response.statusText;
    var detail = body && (body.detail || body.error) ? (body.detail || body.error) : '';
    return new ApiError(response.status, title, detail, body);
  }

  /* fetch() with the token; resolves to the Response when 2xx, else throws ApiError. */
  async function request(method, path, body, options) {
    options = options || {};
    var init = {method: method, cache: 'no-store', credentials: 'same-origin',
                headers: authHeaders({Accept: options.accept || 'application/json'},
                                     options.token),
                signal: options.signal};
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var response = await fetch(apiUrl(path), init);
    if (response.ok) { return response; }
    var error = await problem(response);
    if (response.status === 401 && !options.quiet401) {
      showTokenDialog(token ? 'The server refused the token: ' + error.message
                            : 'This server needs a token.');
    }
    throw error;
  }

  async function api(method, path, body, options) {
    var response = await request(method, path, body, options);
    if (response.status === 204) { return null; }
    var text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /* Read an application/x-ndjson body, calling onEvent(object) per line as it arrives. */
  async function readNdjson(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = '';
    try {
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) { break; }
        buffer += decoder.decode(chunk.value, {stream: true});
        var lines = buffer.split('\n');
        buffer = lines.pop();
        for (var i = 0; i < lines.length; i++) {
          if (lines[i].trim()) { onEvent(JSON.parse(lines[i])); }
        }
      }
      buffer += decoder.decode();
      if (buffer.trim()) { onEvent(JSON.parse(buffer)); }
    } finally {
      try { reader.releaseLock(); } catch (e) { /* already released */ }
    }
  }

  // A few streams at a time; further cells wait for a slot (their code is queued already).
  var slots = {free: MAX_STREAMS, waiting: []};
  function acquireSlot() {
    if (slots.free > 0) { slots.free--; return Promise.resolve(); }
    return new Promise(function (resolve) { slots.waiting.push(resolve); });
  }
  function releaseSlot() {
    var next = slots.waiting.shift();
    if (next) { next(); } else { slots.free++; }
  }

  // -- status line ---------------------------------------------------------------

  var statusTimer = null;
  function setStatus(text, kind) {
    var node = $('status');
    node.textContent = text || '';
    node.className = kind || '';
    clearTimeout(statusTimer);
    if (text && kind !== 'error') {
      statusTimer = setTimeout(function () { node.textContent = ''; }, 4000);
    }
  }

  function describe(error) {
    if (error && error.name === 'ApiError') { return error.message; }
    if (error && error.name === 'TypeError') { return 'the server cannot be reached'; }
    return String(error && error.message ? error.message : error);
  }

  // -- text helpers ----------------------------------------------------------------

  var ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g;
  function stripAnsi(text) { return text.replace(ANSI, ''); }

  /* A stream as a terminal shows it: carriage returns applied, then colours (a line
     rewritten with \r loses its colours: an escape sequence has no width there). */
  function streamNodes(text) {
    return ansiNodes(text.indexOf('\r') >= 0 ? applyCarriageReturns(stripAnsi(text)) : text);
  }

  /* Text with ANSI SGR colours (ESC[31m, ESC[1;92m, ESC[0m...) as spans of classes
     ansi-fg-N, ansi-bg-N, ansi-bold; every other escape sequence is dropped.  The
     text goes in as text nodes: nothing of it is ever parsed as HTML. */
  function ansiNodes(text) {
    var out = document.createDocumentFragment();
    if (text.indexOf('\x1b') < 0) { out.appendChild(document.createTextNode(text)); return out; }
    var style = {fg: null, bg: null, bold: false};
    var pattern = /\x1b\[([0-9;]*)m|\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g;
    var at = 0, found;
    function emit(piece) {
      if (!piece) { return; }
      if (style.fg === null && style.bg === null && !style.bold) {
        out.appendChild(document.createTextNode(piece));
        return;
      }
      var span = el('span', [style.fg !== null ? 'ansi-fg-' + style.fg : '',
                             style.bg !== null ? 'ansi-bg-' + style.bg : '',
                             style.bold ? 'ansi-bold' : ''].filter(Boolean).join(' '), piece);
      out.appendChild(span);
    }
    while ((found = pattern.exec(text)) !== null) {
      emit(text.slice(at, found.index));
      at = pattern.lastIndex;
      if (found[1] === undefined) { continue; }  // not a colour: dropped
      var codes = (found[1] || '0').split(';');
      for (var i = 0; i < codes.length; i++) {
        var code = parseInt(codes[i] || '0', 10);
        if (code === 38 || code === 48) {  // 256 colours (5;N) or RGB (2;R;G;B): not shown
          i += codes[i + 1] === '5' ? 2 : (codes[i + 1] === '2' ? 4 : 0);
        } else if (code === 0) { style = {fg: null, bg: null, bold: false}; }
        else if (code === 1) { style.bold = true; }
        else if (code === 22) { style.bold = false; }
        else if (code >= 30 && code <= 37) { style.fg = code - 30; }
        else if (code >= 90 && code <= 97) { style.fg = code - 90 + 8; }
        else if (code === 39) { style.fg = null; }
        else if (code >= 40 && code <= 47) { style.bg = code - 40; }
        else if (code >= 100 && code <= 107) { style.bg = code - 100 + 8; }
        else if (code === 49) { style.bg = null; }
      }
    }
    emit(text.slice(at));
    return out;
  }

  function joinText(value) {
    return Array.isArray(value) ? value.join('') : (value === undefined || value === null ? '' : String(value));
  }

  /* What a terminal shows for text with carriage returns (progress bars). */
  function applyCarriageReturns(text) {
    if (text.indexOf('\r') < 0) { return text; }
    return text.replace(/\r+\n/g, '\n').split('\n').map(function (line) {
      var shown = '';
      line.split('\r').forEach(function (part) { shown = part + shown.slice(part.length); });
      return shown;
    }).join('\n');
  }

  var SURROGATE = /[\uD800-\uDFFF]/;
  /* The kernel counts cursor positions in code points, JavaScript in UTF-16 units. */
  function toCodePoints(text, index) {
    var head = text.slice(0, index);
    return SURROGATE.test(head) ? Array.from(head).length : head.length;
  }
  function toUtf16(text, points) {
    if (!SURROGATE.test(text)) { return Math.min(points, text.length); }
    var index = 0;
    var count = 0;
    for (var ch of text) {
      if (count >= points) { break; }
      index += ch.length;
      count++;
    }
    return index;
  }

  function commonPrefix(words) {
    if (!words.length) { return ''; }
    var prefix = words[0];
    words.forEach(function (word) {
      while (word.indexOf(prefix) !== 0) { prefix = prefix.slice(0, -1); }
    });
    return prefix;
  }

  function lineStartOf(value, index) { return value.lastIndexOf('\n', index - 1) + 1; }

  /* Where to ask `inspect`: the name at the cursor, else the callee of the open call. */
  function inspectPosition(code, pos) {
    if (/[A-Za-z0-9_]$/.test(code.slice(0, pos)) || /^[A-Za-z0-9_]/.test(code.slice(pos))) {
      return pos + /^[A-Za-z0-9_]*/.exec(code.slice(pos))[0].length;
    }
    var depth = 0;
    for (var i = pos - 1; i >= 0; i--) {
      var ch = code[i];
      if (ch === ')' || ch === ']' || ch === '}') {
        depth++;
      } else if (ch === '(' || ch === '[' || ch === '{') {
        if (depth > 0) { depth--; continue; }
        if (ch === '(') {
          var j = i;
          while (j > 0 && /[ \t]/.test(code[j - 1])) { j--; }
          return j;
        }
      }
    }
    return pos;
  }

  // -- rendering outputs -------------------------------------------------------------

  var MIME_ORDER = ['text/html', 'image/svg+xml', 'image/png', 'image/jpeg', 'image/gif',
                    'text/markdown', 'application/json', 'text/latex', 'text/plain'];

  function htmlFrame(html) {
    var frame = el('iframe', 'output-html');
    frame.setAttribute('sandbox', 'allow-scripts');  // never allow-same-origin
    frame.setAttribute('referrerpolicy', 'no-referrer');
    frame.title = 'HTML output';
    frame.addEventListener('load', function () {
      if (frame.contentWindow) {
        frame.contentWindow.postMessage({wsgikernelFrame: 'render', html: html}, '*');
      }
    });  // every load: moving a cell in the page reloads its frames
    frame.src = FRAME_URL;
    return frame;
  }

  function imageOutput(mime, value, meta) {
    var img = el('img', 'output-image');
    img.alt = mime + ' output';
    if (mime === 'image/svg+xml') {
      img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(joinText(value));
    } else {
      img.src = 'data:' + mime + ';base64,' + joinText(value).replace(/\s+/g, '');
    }
    if (meta && +meta.width > 0) { img.width = +meta.width; }
    if (meta && +meta.height > 0) { img.height = +meta.height; }
    return img;
  }

  function renderMime(data, metadata) {
    data = data || {};
    metadata = metadata || {};
    for (var i = 0; i < MIME_ORDER.length; i++) {
      var mime = MIME_ORDER[i];
      if (!Object.prototype.hasOwnProperty.call(data, mime)) { continue; }
      var value = data[mime];
      var meta = metadata[mime] || {};
      switch (mime) {
        case 'text/html':
          return htmlFrame(joinText(value));
        case 'image/svg+xml':
        case 'image/png':
        case 'image/jpeg':
        case 'image/gif':
          return imageOutput(mime, value, meta);
        case 'text/markdown':
          return el('pre', 'output-text output-markdown', joinText(value));
        case 'application/json':
          return el('pre', 'output-text output-json', JSON.stringify(value, null, 2));
        default:
          var text = el('pre', 'output-text');
          text.appendChild(ansiNodes(joinText(value)));
          return text;
      }
    }
    return el('pre', 'output-text output-unknown',
              '[output of type ' + Object.keys(data).join(', ') + ' is not shown here]');
  }

  function errorOutput(output) {
    var box = el('pre', 'output-error');
    var raw = (output.traceback || []).map(String).join('\n').replace(/\n+$/, '');
    if (raw.indexOf('\x1b') >= 0) {  // coloured already (IPython's tracebacks): as it is
      box.appendChild(ansiNodes(raw));
      return box;
    }
    var text = raw;
    var last = (output.ename || 'Error') + (output.evalue ? ': ' + output.evalue : '');
    if (!text) {
      box.appendChild(el('strong', 'error-name', last));
      return box;
    }
    var cut = text.lastIndexOf('\n');
    var tail = text.slice(cut + 1);
    if (output.ename && tail.indexOf(output.ename) === 0) {
      box.appendChild(document.createTextNode(text.slice(0, cut + 1)));
      box.appendChild(el('strong', 'error-name', tail));
    } else {  // e.g. a KeyboardInterrupt traceback of an ExecutionCancelled error
      box.appendChild(document.createTextNode(text + '\n'));
      box.appendChild(el('strong', 'error-name', last));
    }
    return box;
  }

  /* What a list of outputs shows, to compare live outputs with the final record. */
  function outputSignature(outputs) {
    var parts = [];
    outputs.forEach(function (output) {
      var type = output.output_type;
      var last = parts[parts.length - 1];
      if (type === 'stream') {
        if (last && last.stream === output.name) {
          last.text += joinText(output.text);
        } else {
          parts.push({stream: output.name, text: joinText(output.text)});
        }
      } else if (type === 'clear_output') {
        parts = [];
      } else {
        parts.push({type: type, data: output.data, ename: output.ename, evalue: output.evalue});
      }
    });
    return JSON.stringify(parts);
  }

  // -- cells ----------------------------------------------------------------------------

  var CELL_OPS = [
    ['up', '\u2191', 'Move the cell up (Alt+\u2191)'],
    ['down', '\u2193', 'Move the cell down (Alt+\u2193)'],
    ['above', '+\u2191', 'Insert a cell above (A in command mode)'],
    ['below', '+\u2193', 'Insert a cell below (B in command mode)'],
    ['run-above', '\u25B6\u2191', 'Run every cell above this one'],
    ['run-below', '\u25B6\u2193', 'Run this cell and every one below'],
    ['clear', '\u2300', 'Clear the outputs of this cell'],
    ['type', 'M\u2194', 'Markdown cell or code cell (M / Y in command mode)'],
    ['delete', '\u2715', 'Delete the cell (D, D in command mode; Undo delete brings it back)']
  ];

  /* The toolbar a cell shows on hover and focus: its operations. */
  function cellOps(cell) {
    var bar = el('div', 'cell-ops');
    bar.setAttribute('role', 'toolbar');
    bar.setAttribute('aria-label', 'cell operations');
    CELL_OPS.forEach(function (op) {
      var b = button('cell-op', op[1], op[2]);
      b.dataset.op = op[0];
      b.addEventListener('click', function () { cell.env.cellOp(cell, op[0]); });
      bar.appendChild(b);
    });
    return bar;
  }

  function Cell(env, code) {
    var self = this;
    this.env = env;
    this.n = null;  // execution_count once accepted
    this.running = false;
    this.lastStream = null;
    this.seen = [];  // the outputs shown, as they came
    this.completer = null;
    this.popup = null;

    this.el = el('div', 'cell');
    var input = el('div', 'cell-input');
    this.promptIn = el('div', 'prompt prompt-in', 'In [ ]:');
    var wrap = el('div', 'editor-wrap');
    this.wrap = wrap;
    this.editor = new CellEditor(code || '', 'code cell');
    var tools = el('div', 'cell-tools');
    this.btnRun = button('cell-run', '\u25B6', 'Run this cell (Shift-Enter)');
    this.btnStop = button('cell-interrupt', '\u25A0', 'Interrupt this cell');
    this.btnStop.disabled = true;
    tools.appendChild(this.btnRun);
    tools.appendChild(this.btnStop);
    wrap.appendChild(this.editor.dom);
    input.appendChild(this.promptIn);
    input.appendChild(wrap);
    input.appendChild(tools);
    this.outputs = el('div', 'cell-output');
    this.type = 'code';
    this.rendered = el('div', 'markdown-rendered');
    this.rendered.hidden = true;
    this.rendered.addEventListener('dblclick', function () { self.editMarkdown(); });
    wrap.appendChild(this.rendered);
    this.meta = el('div', 'cell-meta');
    this.el.appendChild(cellOps(this));
    this.el.appendChild(input);
    this.el.appendChild(this.meta);
    this.el.appendChild(this.outputs);
    // Command mode (Jupyter's): Esc leaves the editor for the cell itself, whose keys
    // then act on cells (see commandKey); Enter goes back to editing.
    this.el.tabIndex = -1;
    this.el.setAttribute('aria-label', 'cell');
    this.el.addEventListener('keydown', function (event) {
      if (event.target === self.el) { self.env.commandKey(self, event); }
    });

    this.btnRun.addEventListener('click', function () { self.run(false); });
    this.btnStop.addEventListener('click', function () { self.interrupt(); });
    this.editor.addEventListener('keydown', function (event) { self.onKeyDown(event); });
    this.editor.addEventListener('input', function () {
      if (self.completer) { self.completer.filter(); }
      if (self.n === null) { self.env.saveDrafts(); }
    });
    this.editor.addEventListener('blur', function () {
      setTimeout(function () {
        if (!self.editor.hasFocus) { self.closePopups(); }
      }, 150);
    });
  }

  Cell.prototype.focus = function () {
    if (this.editor.hidden) { this.el.focus(); } else { this.editor.focus(); }
    this.el.scrollIntoView({block: 'nearest'});
  };

  Cell.prototype.setPrompt = function (text) { this.promptIn.textContent = text; };

  Cell.prototype.setRunning = function (running) {
    this.running = running;
    this.el.classList.toggle('running', running);
    this.btnStop.disabled = !running || this.n === null;
    if (running) { this.setPrompt('In [*]:'); }
  };

  Cell.prototype.clearOutputs = function () {
    this.outputs.textContent = '';
    this.lastStream = null;
    this.seen = [];
  };

  /* How long the cell ran and when it ended, under its input (from the record). */
  Cell.prototype.showTiming = function (record) {
    var seconds = record.duration;
    if (typeof seconds !== 'number') { this.meta.textContent = ''; return; }
    var took = seconds < 1 ? Math.round(seconds * 1000) + ' ms'
      : (seconds < 60 ? seconds.toFixed(2) + ' s' : Math.floor(seconds / 60) + ' min ' +
         Math.round(seconds % 60) + ' s');
    var at = record.finished ? new Date(record.finished) : null;
    this.meta.textContent = 'ran ' + took + (at && !isNaN(at) ? ', done ' + at.toLocaleTimeString() : '');
    this.meta.title = record.status + (record.reason ? ' (' + record.reason + ')' : '');
  };

  /* Collapse a long stream to its first lines, with a button that shows the rest. */
  function collapseIfLong(pre) {
    var lines = pre.textContent.split('\n').length;
    if (lines <= LONG_OUTPUT_LINES || pre.dataset.collapsible) { return; }
    pre.dataset.collapsible = 'true';
    pre.classList.add('collapsed');
    var more = button('show-more', 'Show all ' + lines + ' lines', 'Show the whole output');
    more.addEventListener('click', function () {
      var collapsed = pre.classList.toggle('collapsed');
      more.textContent = collapsed ? 'Show all ' + lines + ' lines' : 'Show less';
    });
    pre.after(more);
  }

  Cell.prototype.note = function (text, kind) {
    this.outputs.appendChild(el('div', 'output-note ' + (kind || ''), text));
    this.lastStream = null;
  };

  Cell.prototype.addOutput = function (output) {
    var type = output.output_type;
    if (type === 'update_display_data') { updateDisplay(output); return; }
    this.seen.push(output);
    if (type === 'stream') {
      var name = output.name === 'stderr' ? 'stderr' : 'stdout';
      var text = joinText(output.text);
      var last = this.lastStream;
      if (last && last.name === name && last.node === this.outputs.lastChild) {
        last.text += text;
        if (last.text.indexOf('\r') < 0 && text.indexOf('\x1b') < 0 &&
            last.text.indexOf('\x1b') < 0) {
          last.node.appendChild(document.createTextNode(text));
        } else {
          last.node.textContent = '';
          last.node.appendChild(streamNodes(last.text));
        }
        return;
      }
      var pre = el('pre', 'output-stream ' + name);
      pre.appendChild(streamNodes(text));
      this.outputs.appendChild(pre);
      this.lastStream = {name: name, text: text, node: pre};
      return;
    }
    this.lastStream = null;
    if (type === 'clear_output') { this.clearOutputs(); return; }
    var row = el('div', 'output-row');
    var prompt = el('div', 'prompt prompt-out');
    var body;
    if (type === 'error') {
      body = errorOutput(output);
    } else if (type === 'execute_result' || type === 'display_data') {
      if (type === 'execute_result') {
        prompt.textContent = 'Out [' + (output.execution_count || this.n || ' ') + ']:';
        row.classList.add('output-result');
      }
      body = renderMime(output.data, output.metadata);
    } else {
      return;  // an output type this page does not know: nothing to show
    }
    var holder = el('div', 'output-body');
    holder.appendChild(body);
    row.appendChild(prompt);
    row.appendChild(holder);
    var displayId = output.transient && output.transient.display_id;
    if (displayId) { row.dataset.displayId = String(displayId); }
    this.outputs.appendChild(row);
  };

  /* update_display(): every output shown with that display_id, in any cell, in place. */
  function updateDisplay(output) {
    var displayId = output.transient && output.transient.display_id;
    if (!displayId) { return; }
    document.querySelectorAll('#cells .output-row').forEach(function (row) {
      if (row.dataset.displayId !== String(displayId)) { return; }
      var holder = row.querySelector('.output-body');
      holder.textContent = '';
      holder.appendChild(renderMime(output.data, output.metadata));
    });
  }

  Cell.prototype.accepted = function (n) {
    if (this.releaseSubmit) { this.releaseSubmit(); this.releaseSubmit = null; }
    this.n = n;
    this.env.saveDrafts();
    this.setRunning(true);
    countedRun(this.env.id, n);
  };

  // The "N runs" of the header at once, not at the next listing: the count is the
  // highest execution_count this page has seen accepted.
  function countedRun(id, n) {
    var env = envs.get(id);
    if (env && typeof n === 'number' && n > (env.execution_count || 0)) {
      env.execution_count = n;
      renderEnvHeader();
    }
  }

  Cell.prototype.finish = function (record) {
    this.dropInput();  // the wait ended with the cell (a timeout, an interrupt)
    this.setRunning(false);
    this.n = record.execution_count;
    countedRun(this.env.id, this.n);
    this.setPrompt('In [' + this.n + ']:');
    this.showTiming(record);
    this.env.refreshVariables();
    this.el.dataset.status = record.status || '';
    // The record is the authority: show its outputs if the live ones differ
    // (an error added when the execution was cancelled, a stream cut short).
    var self = this;
    var outputs = record.outputs || [];
    if (outputSignature(outputs) !== outputSignature(this.seen)) {
      this.clearOutputs();
      outputs.forEach(function (output) { self.addOutput(output); });
    }
    this.outputs.querySelectorAll('pre.output-stream').forEach(collapseIfLong);
    var hasError = outputs.some(function (output) { return output.output_type === 'error'; });
    if (record.error && !hasError) {
      this.addOutput(Object.assign({output_type: 'error'}, record.error));
      hasError = true;
    }
    if (record.status === 'aborted') {
      var why = {kernel_died: 'The kernel died while this cell ran.',
                 timeout: 'Stopped: the execution timed out.',
                 cancelled: hasError ? null : 'Cancelled.'}[record.reason];
      if (why !== null) {
        this.note(why || ('Aborted' + (record.reason ? ': ' + record.reason : '.')), 'error');
      }
    }
    if (record.truncated) {
      this.note('Output was cut at the server\'s output cap.', 'warning');
    }
  };

  /* Show a record from the history (and follow it if it still runs). */
  Cell.prototype.showRecord = function (record) {
    var self = this;
    this.n = record.execution_count;
    (record.outputs || []).forEach(function (output) { self.addOutput(output); });
    if (unfinished(record)) {
      this.setRunning(true);
      this.follow(this.n);
    } else {
      this.finish(record);
    }
  };

  /* One execution's NDJSON stream; true if it ended with the record. */
  Cell.prototype.consume = async function (response) {
    var self = this;
    var done = false;
    await readNdjson(response, function (event) {
      if (self.env.closed) { return; }
      if (event.event === 'accepted') {
        self.accepted(event.execution_count);
      } else if (event.event === 'output') {
        self.addOutput(event);
      } else if (event.event === 'clear_output') {
        self.clearOutputs();
      } else if (event.event === 'input_request') {
        self.askInput(event);
      } else if (event.event === 'record') {
        self.finish(event);
        done = true;
      }
    });
    return done;
  };

  /* Attach to execution n (replays its outputs, then follows it live). */
  Cell.prototype.follow = async function (n) {
    await acquireSlot();
    try {
      for (var attempt = 0; attempt < 5 && !this.env.closed; attempt++) {
        try {
          var response = await request('GET', envPath(this.env.id, '/executions/' + n + '?stream=1'),
                                       undefined, {signal: this.env.signal,
                                                   accept: 'application/x-ndjson'});
          this.clearOutputs();
          if (await this.consume(response)) { return; }
        } catch (error) {
          if (this.env.closed || (error.name === 'ApiError' && error.status !== 503)) {
            if (!this.env.closed) { this.setRunning(false); this.note(describe(error), 'error'); }
            return;
          }
        }
        await new Promise(function (resolve) { setTimeout(resolve, 500 * (attempt + 1)); });
      }
      if (!this.env.closed) {
        this.setRunning(false);
        this.note('Lost the connection to this execution; reload to see its result.', 'error');
      }
    } finally {
      releaseSlot();
    }
  };

  /* A code cell, or a markdown one: rendered by marked, sanitised by DOMPurify, never
     sent to the kernel.  ``render``: show it rendered at once. */
  Cell.prototype.setType = function (type, render) {
    if (type === this.type) { return this; }
    if ((this.n !== null || this.running) && type === 'markdown') {
      setStatus('A cell that ran (or is running) stays a code cell.', 'info');
      return this;
    }
    this.type = type;
    this.editor.setLanguage(type);
    this.el.classList.toggle('markdown', type === 'markdown');
    this.setPrompt(type === 'markdown' ? '' : 'In [ ]:');
    if (type === 'markdown') { this.clearOutputs(); this.meta.textContent = ''; }
    if (type === 'markdown' && render) { this.renderMarkdown(); } else { this.editMarkdown(true); }
    this.env.saveDrafts();
    return this;
  };

  Cell.prototype.renderMarkdown = function () {
    var source = this.editor.value;
    this.rendered.textContent = '';
    if (window.marked && window.DOMPurify) {
      var html = window.marked.parse(source, {async: false});
      // No id or name of the page's own (ids become user-content-...), no form controls.
      this.rendered.appendChild(window.DOMPurify.sanitize(html, {
        RETURN_DOM_FRAGMENT: true, SANITIZE_NAMED_PROPS: true,
        FORBID_TAGS: ['form', 'input', 'button', 'textarea', 'select', 'option'],
        FORBID_ATTR: ['name']}));
    } else {  // the vendored files did not load: the text, never HTML
      this.rendered.appendChild(el('pre', 'markdown-source', source));
    }
    this.rendered.querySelectorAll('a[href]').forEach(function (link) {
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
    });
    this.rendered.hidden = false;
    this.editor.hidden = true;
  };

  Cell.prototype.editMarkdown = function (quiet) {
    this.rendered.hidden = true;
    this.editor.hidden = false;
    if (!quiet) { this.editor.focus(); }
  };

  Cell.prototype.run = async function (advance, options) {
    var env = this.env;
    var code = this.editor.value;
    if (this.type === 'markdown') {
      this.closePopups();
      this.renderMarkdown();
      if (advance) { env.focusAfter(this); } else { this.el.focus(); }
      return;
    }
    this.closePopups();
    if (advance) { env.focusAfter(this); }
    if (!code.trim()) { return; }
    if (this.running) { setStatus('This cell is still running.', 'info'); return; }
    this.clearOutputs();
    this.n = null;
    this.setRunning(true);
    delete this.el.dataset.status;
    // Cells run in the order they were submitted: each request leaves only once the
    // previous cell's code was accepted (has its execution count).
    var previous = env.submitting;
    var release;
    env.submitting = new Promise(function (resolve) { release = resolve; });
    this.releaseSubmit = release;
    try {
      await previous;
      if (env.restarting) {  // code sent while the kernel restarts would find no kernel
        await env.restarting.catch(function () {});
      }
      if (env.closed) { return; }
      await this.submit(code, options);
    } finally {
      release();
    }
  };

  Cell.prototype.submit = async function (code, options) {
    var extra = options && options.stopOnError ? {stop_on_error: true} : {};
    var env = this.env;
    var path = envPath(env.id, '/execute');
    try {
      if (slots.free > 0) {
        slots.free--;
        var done = false;
        try {
          var response = await request('POST', path, Object.assign(
            {code: code, stream: true, allow_stdin: true}, extra),
                                       {signal: env.signal, accept: 'application/x-ndjson'});
          try {
            done = await this.consume(response);
          } catch (cut) {
            if (env.closed) { return; }  // the stream was cut: follow the execution below
          }
        } finally {
          releaseSlot();
        }
        if (env.closed) { return; }
        if (!done && this.n !== null) {
          await this.follow(this.n);
        } else if (!done) {
          this.setRunning(false);
          this.note('No answer from the server.', 'error');
        }
      } else {
        // Too many streams open: queue the code now, follow its output when a slot frees.
        var record = await api('POST', path, Object.assign(
          {code: code, wait: 0, allow_stdin: true}, extra), {signal: env.signal});
        this.accepted(record.execution_count);
        if (unfinished(record)) {
          await this.follow(record.execution_count);
        } else {
          this.showRecordOutputs(record);
        }
      }
      env.refreshSoon();
    } catch (error) {
      if (env.closed) { return; }
      this.setRunning(false);
      this.setPrompt(this.n === null ? 'In [ ]:' : 'In [' + this.n + ']:');
      this.note(describe(error), 'error');
      env.refreshSoon();
    }
  };

  /* The cell's input() waits for a line: a box in the outputs, masked for getpass().
     Enter sends it; the kernel then writes the prompt and the answer as output. */
  Cell.prototype.askInput = function (event) {
    var self = this;
    this.dropInput();
    var box = el('form', 'input-request');
    var label = el('label', 'input-prompt', event.prompt || '');
    var field = el('input', 'input-field');
    field.type = event.password ? 'password' : 'text';
    field.autocomplete = 'off';
    field.setAttribute('aria-label', event.prompt || 'input for this cell');
    label.appendChild(field);
    box.appendChild(label);
    box.addEventListener('submit', async function (e) {
      e.preventDefault();
      field.disabled = true;
      try {
        await api('POST', envPath(self.env.id, '/executions/' + event.execution_count + '/input'),
                  {value: field.value}, {signal: self.env.signal});
        box.remove();  // this box only: the next input() may have asked already
        if (self.inputBox === box) { self.inputBox = null; }
      } catch (error) {
        field.disabled = false;
        self.note('Input not sent: ' + describe(error), 'error');
      }
    });
    this.inputBox = box;
    this.outputs.appendChild(box);
    this.lastStream = null;
    field.focus();
  };

  Cell.prototype.dropInput = function () {
    if (this.inputBox && this.inputBox.parentNode) {
      this.inputBox.parentNode.removeChild(this.inputBox);
    }
    this.inputBox = null;
  };

  Cell.prototype.showRecordOutputs = function (record) {
    var self = this;
    this.clearOutputs();
    (record.outputs || []).forEach(function (output) { self.addOutput(output); });
    this.finish(record);
  };

  Cell.prototype.interrupt = async function () {
    if (this.n === null) { return; }
    try {
      await api('POST', envPath(this.env.id, '/executions/' + this.n + '/cancel'), {});
      setStatus('Interrupt sent.', 'info');
    } catch (error) {
      setStatus('Interrupt failed: ' + describe(error), 'error');
    }
  };

  // -- help while typing ----------------------------------------------------------------

  Cell.prototype.closePopups = function () {
    if (this.completer) { this.completer.close(); }
    if (this.popup) { this.popup.remove(); this.popup = null; }
  };

  Cell.prototype.placePopup = function (node, index) {
    var box = this.editor.dom;
    var caret = this.editor.coords(index);
    var left = box.offsetLeft + Math.max(0, Math.min(caret.left, box.clientWidth - 40));
    node.style.left = left + 'px';
    node.style.top = (box.offsetTop + caret.top + caret.height + 4) + 'px';
    this.wrap.appendChild(node);
  };

  Cell.prototype.onKeyDown = function (event) {
    var area = this.editor;
    if (this.type === 'markdown') { this.onMarkdownKey(event); return; }
    if (this.completer && this.completer.onKey(event)) { return; }
    if (event.key === 'Escape') {
      if (this.popup || this.completer) {
        event.preventDefault();
        this.closePopups();
      } else {
        event.preventDefault();
        this.el.focus();  // command mode: Tab goes on from here (keyboard users are not trapped)
      }
      return;
    }
    if (event.altKey && !event.ctrlKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
      event.preventDefault();
      this.env.cellOp(this, event.key === 'ArrowUp' ? 'up' : 'down');
      this.editor.focus();
      return;
    }
    if (this.popup && !['Shift', 'Control', 'Alt', 'Meta'].includes(event.key)) {
      this.popup.remove();
      this.popup = null;
    }
    var plain = !event.ctrlKey && !event.altKey && !event.metaKey;
    if (event.key === 'Enter' && !event.isComposing) {
      if (event.shiftKey && plain) { event.preventDefault(); this.run(true); return; }
      if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey) {
        event.preventDefault();
        this.run(false);
        return;
      }
      if (plain && !event.shiftKey) { event.preventDefault(); this.newline(); return; }
      return;
    }
    if (event.key === 'Tab' && plain) {
      event.preventDefault();
      var start = area.selectionStart;
      var end = area.selectionEnd;
      var before = area.value.slice(lineStartOf(area.value, start), start);
      var lineWise = area.value.slice(start, end).indexOf('\n') >= 0 || !before.trim();
      if (event.shiftKey) {
        if (lineWise) { area.shift(true); } else { this.inspect(); }
      } else if (area.value.slice(start, end).indexOf('\n') >= 0) {
        area.shift(false);
      } else if (!before.trim()) {
        area.replace(start, end, INDENT.slice(before.length % INDENT.length));
      } else {
        this.complete();
      }
      return;
    }
  };

  /* A markdown cell's editor is plain text: Esc, run (render) and move only. */
  Cell.prototype.onMarkdownKey = function (event) {
    if (event.key === 'Escape') { event.preventDefault(); this.el.focus(); return; }
    if (event.key === 'Enter' && !event.isComposing && (event.shiftKey || event.ctrlKey ||
                                                      event.metaKey) && !event.altKey) {
      event.preventDefault();
      this.run(event.shiftKey);
      return;
    }
    if (event.altKey && !event.ctrlKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
      event.preventDefault();
      this.env.cellOp(this, event.key === 'ArrowUp' ? 'up' : 'down');
      this.editor.focus();
    }
  };

  /* Enter: a newline with the indent the code needs (the kernel's is_complete decides). */
  Cell.prototype.newline = function () {
    var area = this.editor;
    var value = area.value;
    var start = area.selectionStart;
    var before = value.slice(0, start);
    var line = before.slice(lineStartOf(value, start));
    var indent = /^[ \t]*/.exec(line)[0];
    var code = line.replace(/#.*$/, '').trim();
    var dedented = false;
    if (/:$/.test(code)) {
      indent += INDENT;
    } else if (/^(return|pass|break|continue|raise)\b/.test(code)) {
      indent = indent.slice(0, Math.max(0, indent.length - INDENT.length));
      dedented = true;
    }
    area.replace(start, area.selectionEnd, '\n' + indent);
    var after = area.value;
    var caret = area.selectionStart;
    api('POST', envPath(this.env.id, '/is_complete'), {code: before}).then(function (reply) {
      if (!reply || area.value !== after || area.selectionStart !== caret ||
          area.selectionEnd !== caret) {
        return;  // the user went on typing: leave it
      }
      var want = null;
      if (reply.status === 'complete') {
        want = '';
      } else if (reply.status === 'incomplete' && typeof reply.indent === 'string' && !dedented) {
        want = reply.indent;
      }
      if (want !== null && want !== indent) {
        area.replace(caret - indent.length, caret, want);
      }
    }).catch(function () { /* the local guess stays */ });
  };

  Cell.prototype.complete = async function () {
    var area = this.editor;
    var value = area.value;
    var pos = area.selectionEnd;
    var reply;
    try {
      reply = await api('POST', envPath(this.env.id, '/complete'),
                        {code: value, cursor_pos: toCodePoints(value, pos)});
    } catch (error) {
      setStatus('Completion failed: ' + describe(error), 'error');
      return;
    }
    if (area.value !== value || area.selectionEnd !== pos) { return; }
    var matches = (reply && reply.matches) || [];
    if (!matches.length) { setStatus('No completions.', 'info'); return; }
    var start = toUtf16(value, reply.cursor_start);
    var end = toUtf16(value, reply.cursor_end);
    if (matches.length === 1) {
      area.replace(start, end, matches[0]);
      return;
    }
    var common = commonPrefix(matches);
    if (common.length > end - start && common.indexOf(value.slice(start, end)) === 0) {
      area.replace(start, end, common);
    }
    this.closePopups();
    this.completer = new Completer(this, matches, start);
  };

  Cell.prototype.inspect = async function () {
    var area = this.editor;
    var value = area.value;
    var pos = inspectPosition(value, area.selectionStart);
    var reply;
    try {
      reply = await api('POST', envPath(this.env.id, '/inspect'),
                        {code: value, cursor_pos: toCodePoints(value, pos), detail_level: 0});
    } catch (error) {
      setStatus('Help failed: ' + describe(error), 'error');
      return;
    }
    this.closePopups();
    var box = el('div', 'inspector');
    box.setAttribute('role', 'tooltip');
    if (!reply || !reply.found) {
      box.appendChild(el('div', 'inspector-empty', 'No help for the name at the cursor.'));
    } else {
      var head = el('div', 'inspector-head');
      head.appendChild(el('strong', null, reply.name || ''));
      if (reply.signature) { head.appendChild(el('span', 'inspector-signature', reply.signature)); }
      if (reply.type) { head.appendChild(el('span', 'inspector-type', reply.type)); }
      box.appendChild(head);
      var doc = reply.docstring || (reply.data && !reply.signature ? joinText(reply.data['text/plain']) : '');
      if (doc) { box.appendChild(el('pre', 'inspector-doc', stripAnsi(doc))); }
    }
    this.popup = box;
    this.placePopup(box, area.selectionStart);
  };

  /* The pick list of completions, under the caret. */
  function Completer(cell, matches, start) {
    var self = this;
    this.cell = cell;
    this.matches = matches;
    this.shown = matches;
    this.start = start;
    this.index = 0;
    this.node = el('ul', 'completer');
    this.node.setAttribute('role', 'listbox');
    this.node.setAttribute('aria-label', 'completions');
    this.node.addEventListener('mousedown', function (event) {
      var item = event.target.closest('li');
      if (!item) { return; }
      event.preventDefault();  // keep the focus in the editor
      self.index = +item.dataset.index;
      self.accept();
    });
    this.draw();
    cell.placePopup(this.node, start);
  }

  Completer.prototype.draw = function () {
    var self = this;
    this.node.textContent = '';
    this.shown.forEach(function (match, i) {
      var item = el('li', i === self.index ? 'selected' : '', match);
      item.dataset.index = i;
      item.setAttribute('role', 'option');
      item.setAttribute('aria-selected', i === self.index ? 'true' : 'false');
      self.node.appendChild(item);
    });
    var selected = this.node.children[this.index];
    if (selected) { selected.scrollIntoView({block: 'nearest'}); }
  };

  Completer.prototype.typed = function () {
    var area = this.cell.editor;
    var caret = area.selectionEnd;
    if (caret < this.start || area.selectionStart !== caret) { return null; }
    var text = area.value.slice(this.start, caret);
    return /^[A-Za-z0-9_.]*$/.test(text) ? text : null;
  };

  Completer.prototype.filter = function () {
    var typed = this.typed();
    if (typed === null) { this.close(); return; }
    this.shown = this.matches.filter(function (match) { return match.indexOf(typed) === 0; });
    if (!this.shown.length) { this.close(); return; }
    this.index = Math.min(this.index, this.shown.length - 1);
    this.draw();
  };

  Completer.prototype.accept = function () {
    var area = this.cell.editor;
    var match = this.shown[this.index];
    var caret = area.selectionEnd;
    this.close();
    if (match !== undefined) { area.replace(this.start, Math.max(caret, this.start), match); }
  };

  Completer.prototype.close = function () {
    this.node.remove();
    if (this.cell.completer === this) { this.cell.completer = null; }
  };

  /* Keys for the list while it is open; true when the key was used. */
  Completer.prototype.onKey = function (event) {
    var count = this.shown.length;
    var mods = event.ctrlKey || event.altKey || event.metaKey;
    if (mods) { return false; }
    if (event.key === 'ArrowDown' || (event.key === 'Tab' && !event.shiftKey)) {
      this.index = (this.index + 1) % count;
    } else if (event.key === 'ArrowUp' || (event.key === 'Tab' && event.shiftKey)) {
      this.index = (this.index - 1 + count) % count;
    } else if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      this.accept();
      return true;
    } else if (event.key === 'Escape') {
      event.preventDefault();
      this.close();
      return true;
    } else {
      if (['ArrowLeft', 'ArrowRight', 'Home', 'End', 'PageUp', 'PageDown'].includes(event.key)) {
        this.close();
      }
      return false;
    }
    event.preventDefault();
    this.draw();
    return true;
  };

  // -- one environment on screen ---------------------------------------------------------

  function EnvView(id) {
    this.id = id;
    this.cells = [];
    this.closed = false;
    this.aborter = new AbortController();
    this.signal = this.aborter.signal;
    this.refreshTimer = null;
    this.restarting = null;  // the pending restart request, if any
    this.submitting = Promise.resolve();  // the last cell's submission (see Cell.run)
    this.session = null;  // the kernel session the cells shown last ran in
    this.deleted = [];  // {cell, index} of deleted cells, for Undo delete
    this.armedDelete = null;  // the cell a first D of D, D was pressed on
  }

  /* A line in the cell list where the kernel restarted: what ran above it is gone. */
  EnvView.prototype.addDivider = function (session) {
    var line = el('div', 'restart-divider', 'Kernel restarted \u00B7 session ' + session);
    line.setAttribute('role', 'separator');
    line.dataset.session = session;
    var ran = this.cells.filter(function (cell) { return cell.n !== null && !cell.running; });
    var after = ran[ran.length - 1];
    var container = $('cells');
    container.insertBefore(line, after ? after.el.nextSibling : container.firstChild);
  };

  /* The env's session now: a new one (restart, restore, undo) gets its divider, once. */
  EnvView.prototype.sessionSeen = function (session) {
    if (this.closed || $('cells').dataset.loaded !== 'true' || session === undefined) { return; }
    if (this.session !== null && session > this.session) { this.addDivider(session); }
    if (this.session === null || session > this.session) { this.session = session; }
  };

  EnvView.prototype.open = async function () {
    var container = $('cells');
    container.textContent = '';
    container.setAttribute('aria-busy', 'true');
    var records = [];
    try {
      var since = 0;
      for (var page = 0; page < 10000; page++) {
        var answer = await api('GET', envPath(this.id, '/executions?since=' + since + '&limit=100'),
                               undefined, {signal: this.signal});
        records = records.concat(answer.executions || []);
        if (answer.next === null || answer.next === undefined || answer.next <= since) { break; }
        since = answer.next;
      }
    } catch (error) {
      if (this.closed) { return; }
      setStatus('Could not load the history: ' + describe(error), 'error');
    }
    if (this.closed) { return; }
    var self = this;
    records.forEach(function (record) {
      if (self.session !== null && record.session !== self.session) {
        self.addDivider(record.session);
      }
      self.session = record.session;
      var cell = self.addCell(record.code);
      cell.showRecord(record);
    });
    var listed = envs.get(this.id);
    if (this.session === null && listed) { this.session = listed.session; }  // nothing ran yet
    var drafts = [];
    try { drafts = JSON.parse(sessionStorage.getItem(DRAFTS_KEY + this.id) || '[]'); } catch (e) { drafts = []; }
    if (!Array.isArray(drafts)) { drafts = []; }
    this.placeDrafts(drafts);
    if (!drafts.length) { this.addCell(''); }
    container.removeAttribute('aria-busy');
    container.dataset.loaded = 'true';
    this.refreshVariables();
    var last = this.cells[this.cells.length - 1];
    if (last) { last.focus(); }
  };

  EnvView.prototype.close = function () {
    this.closed = true;
    this.aborter.abort();
    clearTimeout(this.refreshTimer);
    // Each editor listens on the document and window: let go of them (a destroyed one
    // still answers its text, for a reply that comes back late).
    this.cells.concat(this.deleted.map(function (gone) { return gone.cell; }))
      .forEach(function (cell) { cell.closePopups(); cell.editor.destroy(); });
  };

  EnvView.prototype.addCell = function (code, after) {
    var cell = new Cell(this, code);
    var container = $('cells');
    var index = after ? this.cells.indexOf(after) + 1 : this.cells.length;
    if (index < this.cells.length) {
      container.insertBefore(cell.el, this.cells[index].el);
    } else {
      container.appendChild(cell.el);
    }
    this.cells.splice(index, 0, cell);
    return cell;
  };

  /* Insert a new cell at ``index`` of the list (its place in the page follows). */
  EnvView.prototype.insertCell = function (code, index) {
    if (index >= this.cells.length) { return this.addCell(code); }
    if (index <= 0) {
      var cell = new Cell(this, code);
      $('cells').insertBefore(cell.el, this.cells[0].el);
      this.cells.unshift(cell);
      return cell;
    }
    return this.addCell(code, this.cells[index - 1]);
  };

  /* One of a cell's operations (its toolbar, command-mode keys, Alt+arrows). */
  EnvView.prototype.cellOp = function (cell, op) {
    var cells = this.cells;
    var index = cells.indexOf(cell);
    if (index < 0) { return; }
    var container = $('cells');
    if (op === 'up' && index > 0) {
      container.insertBefore(cell.el, cells[index - 1].el);
      cells.splice(index - 1, 2, cell, cells[index - 1]);
    } else if (op === 'down' && index < cells.length - 1) {
      container.insertBefore(cells[index + 1].el, cell.el);
      cells.splice(index, 2, cells[index + 1], cell);
    } else if (op === 'above') {
      this.insertCell('', index).focus();
    } else if (op === 'below') {
      this.addCell('', cell).focus();
    } else if (op === 'clear') {
      cell.clearOutputs();
    } else if (op === 'type') {
      cell.setType(cell.type === 'markdown' ? 'code' : 'markdown', false);
    } else if (op === 'delete') {
      this.deleteCell(cell);
    } else if (op === 'run-above') {
      this.runCells(cells.slice(0, index));
    } else if (op === 'run-below') {
      this.runCells(cells.slice(index));
    }
    this.saveDrafts();
  };

  EnvView.prototype.deleteCell = function (cell) {
    var index = this.cells.indexOf(cell);
    cell.closePopups();
    this.cells.splice(index, 1);
    cell.el.remove();
    this.deleted.push({cell: cell, index: index});
    $('btn-undo-delete').hidden = false;
    if (!this.cells.length) { this.addCell(''); }
    this.saveDrafts();
    var next = this.cells[Math.min(index, this.cells.length - 1)];
    if (next) { next.el.focus(); }
    setStatus('Cell deleted. Undo delete (Z in command mode) brings it back.', 'info');
  };

  EnvView.prototype.undoDelete = function () {
    var last = this.deleted.pop();
    $('btn-undo-delete').hidden = !this.deleted.length;
    if (!last) { return; }
    var index = Math.min(last.index, this.cells.length);
    var container = $('cells');
    container.insertBefore(last.cell.el, index < this.cells.length ? this.cells[index].el : null);
    this.cells.splice(index, 0, last.cell);
    last.cell.el.focus();
    this.saveDrafts();
  };

  /* Run ``cells`` in order (each waits for the one before it to be accepted).  With
     ``stopOnError`` each waits for the one before it to finish, and none runs after a
     failure (the server's stop_on_error only covers what was queued already). */
  EnvView.prototype.runCells = async function (cells, options) {
    if (!(options && options.stopOnError)) {
      cells.forEach(function (cell) {
        if (cell.type === 'markdown') { cell.renderMarkdown(); }
        else if (cell.editor.value.trim()) { cell.run(false); }
      });
      return;
    }
    for (var i = 0; i < cells.length; i++) {
      var cell = cells[i];
      if (this.closed) { return; }
      if (cell.type === 'markdown') { cell.renderMarkdown(); continue; }
      if (!cell.editor.value.trim()) { continue; }
      await cell.run(false);
      var status = cell.el.dataset.status;
      if (status === 'error' || status === 'aborted') {
        cells.slice(i + 1).forEach(function (rest) {
          if (rest.type === 'markdown' || !rest.editor.value.trim()) { return; }
          rest.clearOutputs();
          rest.note('Not run: a cell above failed (Restart & run all stops at the first error).',
                    'warning');
        });
        return;
      }
    }
  };

  /* Keys of command mode (a cell focused, not its editor), as in Jupyter. */
  EnvView.prototype.commandKey = function (cell, event) {
    if (event.ctrlKey || event.metaKey) {
      if (event.key === 'Enter') { event.preventDefault(); cell.run(false); }
      return;
    }
    var key = event.key;
    var index = this.cells.indexOf(cell);
    var handled = true;
    if (key === 'Enter' && event.shiftKey) {
      cell.run(true);
    } else if (key === 'Enter') {
      if (cell.type === 'markdown') { cell.editMarkdown(); } else { cell.editor.focus(); }
    } else if (key === 'ArrowUp' || key === 'k') {
      if (event.altKey) { this.cellOp(cell, 'up'); cell.el.focus(); }
      else if (index > 0) { this.cells[index - 1].el.focus(); }
    } else if (key === 'ArrowDown' || key === 'j') {
      if (event.altKey) { this.cellOp(cell, 'down'); cell.el.focus(); }
      else if (index < this.cells.length - 1) { this.cells[index + 1].el.focus(); }
    } else if (key === 'a') {
      this.insertCell('', index).el.focus();
    } else if (key === 'b') {
      this.addCell('', cell).el.focus();
    } else if (key === 'd') {
      if (this.armedDelete === cell) { this.armedDelete = null; this.deleteCell(cell); }
      else { this.armedDelete = cell; var self = this;
             setTimeout(function () { if (self.armedDelete === cell) { self.armedDelete = null; } }, 1000); }
    } else if (key === 'z') {
      this.undoDelete();
    } else if (key === 'o') {
      cell.clearOutputs();
    } else if (key === 'm') {
      cell.setType('markdown', false);
    } else if (key === 'y') {
      cell.setType('code');
    } else if (key === '?' || key === 'h') {
      toggleHelp();
    } else {
      handled = false;
    }
    if (handled) { event.preventDefault(); }
  };

  /* Shift-Enter: go to the next cell, making one at the end. */
  EnvView.prototype.focusAfter = function (cell) {
    var index = this.cells.indexOf(cell);
    var next = this.cells[index + 1] || this.addCell('');
    next.focus();
  };

  /* The cells not run (code and markdown) go back where they stood: each after the
     cell that ran just above it (``after``, its execution count; 0: above them all).
     A draft whose cell is gone from the history, or an older page's (a string), goes
     at the end. */
  EnvView.prototype.placeDrafts = function (drafts) {
    var self = this;
    var last = new Map();  // after -> the draft placed there most recently
    drafts.forEach(function (draft) {
      if (typeof draft === 'string') { draft = {type: 'code', source: draft}; }
      if (!draft || typeof draft.source !== 'string') { return; }
      var after = draft.after;
      var index = self.cells.length;
      if (last.has(after)) {
        index = self.cells.indexOf(last.get(after)) + 1;
      } else if (after === 0) {
        index = 0;
      } else if (typeof after === 'number') {
        var ran = self.cells.findIndex(function (cell) { return cell.n === after; });
        if (ran >= 0) { index = ran + 1; }
      }
      var cell = self.insertCell(draft.source, index);
      last.set(after, cell);
      if (draft.type === 'markdown') { cell.setType('markdown', true); }
    });
  };

  EnvView.prototype.saveDrafts = function () {
    if (this.closed || $('cells').dataset.loaded !== 'true') { return; }  // not while opening
    var after = 0;
    var drafts = [];
    this.cells.forEach(function (cell) {
      if (cell.n !== null) { after = cell.n; return; }
      if (cell.editor.value.trim()) {
        drafts.push({type: cell.type, source: cell.editor.value, after: after});
      }
    });
    try {
      if (drafts.length) {
        sessionStorage.setItem(DRAFTS_KEY + this.id, JSON.stringify(drafts));
      } else {
        sessionStorage.removeItem(DRAFTS_KEY + this.id);
      }
    } catch (e) { /* storage full: drafts are a convenience */ }
  };

  EnvView.prototype.refreshSoon = function () {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(function () { refreshEnvs().catch(function () {}); }, 100);
  };

  // -- the environment list --------------------------------------------------------------

  function showEnvMessage(text, restart) {
    var node = $('env-message');
    var key = (text || '') + (restart ? '\u0000r' : '');
    if (node.dataset.key === key) { return; }  // re-rendered every poll: keep focus
    node.dataset.key = key;
    node.textContent = '';
    if (text) { node.appendChild(el('span', 'message-text', text)); }
    if (restart) {
      var again = button('banner-restart', 'Restart', 'Start a fresh kernel for this environment');
      again.id = 'banner-restart';
      again.addEventListener('click', function () { envAction('restart'); });
      node.appendChild(again);
    }
    node.hidden = !text;
  }

  var STOP_REASONS = {
    idle: 'the idle timeout stopped it', server_shutdown: 'the server shut down',
    terminated: 'it was sent SIGTERM', shutdown: 'it was shut down'
  };

  // What the banner of a stopped or dead env says: why, in words, and what to do.
  function stopText(env) {
    var exit = env.exit || {};
    var how = exit.signal ? 'signal ' + exit.signal
      : (exit.code !== null && exit.code !== undefined ? 'exit code ' + exit.code : '');
    if (env.state === 'stopped') {
      var why = STOP_REASONS[env.reason] || env.reason || 'it was stopped';
      return 'The kernel is stopped: ' + why + '. Restart it to run code again; the history stays.';
    }
    var detail = env.detail ? ' ' + env.detail : '';
    return 'The kernel died (' + [env.reason, how].filter(Boolean).join(', ') + ').' + detail +
      ' Restart it to run code again; the history stays.';
  }

  function renderEnvList() {
    var list = $('env-list');
    var seen = new Set();
    var ids = Array.from(envs.keys()).sort();
    ids.forEach(function (id, position) {
      var env = envs.get(id);
      seen.add(id);
      var item = list.querySelector('li[data-env="' + CSS.escape(id) + '"]');
      if (!item) {
        item = el('li', 'env-item');
        item.dataset.env = id;
        item.tabIndex = 0;
        item.setAttribute('role', 'button');
        item.appendChild(el('span', 'env-name', id));
        item.appendChild(el('span', 'env-state state'));
        item.addEventListener('click', function () { selectEnv(id); });
        item.addEventListener('keydown', function (event) {
          if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); selectEnv(id); }
        });
      }
      if (list.children[position] !== item) { list.insertBefore(item, list.children[position] || null); }
      var badge = item.querySelector('.env-state');
      if (badge.textContent !== env.state) { badge.textContent = env.state; }
      badge.dataset.state = env.state;
      item.title = id + ': ' + env.state + (env.queued ? ', ' + env.queued + ' queued' : '') +
        (placeText(env) ? ', ' + placeText(env) : '');
      item.classList.toggle('selected', !!view && view.id === id);
      if (view && view.id === id) { item.setAttribute('aria-current', 'true'); } else { item.removeAttribute('aria-current'); }
    });
    Array.prototype.slice.call(list.children).forEach(function (item) {
      if (!seen.has(item.dataset.env)) { item.remove(); }
    });
    $('env-empty').hidden = envs.size > 0;
    renderEnvHeader();
  }

  // Where a Slurm env's kernel runs, in Slurm's own words: "Slurm job 7 on node3", or
  // "Slurm job 8 (PENDING: Resources)" while it waits in the queue.
  function placeText(env) {
    var job = env.slurm;
    if (!job || !job.job_id) { return ''; }
    var text = 'Slurm job ' + job.job_id + (job.node ? ' on ' + job.node : '');
    if (job.state && job.state !== 'RUNNING') {
      text += ' (' + job.state + (job.reason && job.reason !== 'None' ? ': ' + job.reason : '') + ')';
    }
    return text;
  }

  function renderEnvHeader() {
    if (!view) { return; }
    var env = envs.get(view.id);
    var badge = $('env-state');
    badge.textContent = env ? env.state : 'gone';
    badge.dataset.state = env ? env.state : 'gone';
    var info = [];
    if (env) {
      info.push('session ' + env.session);
      if (placeText(env)) { info.push(placeText(env)); }
      if (env.forked_from) {
        info.push('forked from ' + env.forked_from.env + ' after cell ' + env.forked_from.execution_count);
      }
      info.push(env.execution_count + ' run' + (env.execution_count === 1 ? '' : 's'));
      if (env.queued) { info.push(env.queued + ' queued'); }
      if (env.exit && (env.state === 'dead' || env.state === 'stopped')) {
        var exit = env.exit.code !== null && env.exit.code !== undefined ? 'exit code ' + env.exit.code
          : (env.exit.signal ? 'signal ' + env.exit.signal : '');
        if (exit) { info.push(exit); }
      }
      if (env.reason && (env.state === 'dead' || env.state === 'stopped')) { info.push(env.reason); }
    }
    $('env-info').textContent = info.join(' \u00B7 ');
    if (!env) {
      showEnvMessage('This environment no longer exists.');
    } else if (env.state === 'dead' || env.state === 'stopped') {
      showEnvMessage(stopText(env), true);
    } else {
      showEnvMessage('');
    }
    if (env && view) { view.sessionSeen(env.session); }
  }

  async function refreshEnvs() {
    var answer = await api('GET', 'envs');
    envs = new Map((answer.envs || []).map(function (env) { return [env.id, env]; }));
    renderEnvList();
    return envs;
  }

  function selectEnv(id) {
    if (view && view.id === id) { return; }
    if (view) { view.close(); }
    view = new EnvView(id);
    $('variables-body').textContent = '';
    $('variable-detail').hidden = true;
    $('btn-undo-delete').hidden = true;
    $('welcome').hidden = true;
    $('env-view').hidden = false;
    $('env-title').textContent = id;
    $('cells').dataset.loaded = 'false';
    showEnvMessage('');
    history.replaceState(history.state, '', location.pathname + location.search +
                         '#env=' + encodeURIComponent(id));
    document.title = 'wsgikernel \u2013 ' + id;
    renderEnvList();
    view.open();
  }

  function closeEnvView() {
    if (view) { view.close(); }
    view = null;
    $('env-view').hidden = true;
    $('welcome').hidden = false;
    $('cells').textContent = '';
    document.title = 'wsgikernel';
    history.replaceState(history.state, '', location.pathname + location.search);
    renderEnvList();
  }

  function envFromHash() {
    var match = /^#env=(.+)$/.exec(location.hash);
    if (!match) { return null; }
    try { return decodeURIComponent(match[1]); } catch (e) { return null; }
  }

  // -- toolbar actions -------------------------------------------------------------------------

  async function createEnv(event) {
    event.preventDefault();
    var input = $('new-env-id');
    var id = input.value.trim();
    try {
      var env = id ? await api('PUT', envPath(id), {}) : await api('POST', 'envs', {});
      input.value = '';
      await refreshEnvs();
      selectEnv(env.id);
      setStatus('Environment ' + env.id + ' ready.', 'info');
    } catch (error) {
      setStatus('Could not create the environment: ' + describe(error), 'error');
    }
  }

  async function envAction(action) {
    if (!view) { return; }
    var id = view.id;
    try {
      if (action === 'restart') {
        var current = view;
        var restart = api('POST', envPath(id, '/restart'), {});
        current.restarting = restart;  // cells run meanwhile wait for the new kernel
        $('btn-restart').disabled = true;
        var env;
        try {
          env = await restart;
        } finally {
          if (current.restarting === restart) { current.restarting = null; }
          $('btn-restart').disabled = false;
        }
        setStatus('Restarted ' + id + ' (session ' + env.session + ').', 'info');
        refreshEnvs().catch(function () {});
        return env;
      } else if (action === 'interrupt') {
        await api('POST', envPath(id, '/interrupt'), {});
        setStatus('Interrupted ' + id + '.', 'info');
      } else if (action === 'undo') {
        var undone = await api('POST', envPath(id, '/undo'), {});
        setStatus('Back in ' + id + ' to the state after cell ' +
                  undone.restored.execution_count + ' (session ' + undone.session + ').', 'info');
      } else if (action === 'fork') {
        var forked = await api('POST', envPath(id, '/fork'), {});
        await refreshEnvs();
        selectEnv(forked.id);
        setStatus('Forked ' + id + ' into ' + forked.id + '.', 'info');
      }
    } catch (error) {
      setStatus(action + ' failed: ' + describe(error), 'error');
    }
    refreshEnvs().catch(function () {});
    return null;
  }

  var deleteArmed = null;
  async function deleteEnv() {
    if (!view) { return; }
    var btn = $('btn-delete');
    var id = view.id;
    if (deleteArmed !== id) {  // two clicks, no modal dialog
      deleteArmed = id;
      btn.textContent = 'Really delete?';
      setTimeout(function () { deleteArmed = null; btn.textContent = 'Delete'; }, 4000);
      return;
    }
    deleteArmed = null;
    btn.textContent = 'Delete';
    try {
      await api('DELETE', envPath(id));
      sessionStorage.removeItem(DRAFTS_KEY + id);
      if (view && view.id === id) { closeEnvView(); }
      setStatus('Deleted ' + id + '.', 'info');
    } catch (error) {
      setStatus('Delete failed: ' + describe(error), 'error');
    }
    refreshEnvs().catch(function () {});
  }

  /* The server's notebook of the history, in the page's order and with the page's
     markdown cells where they stand (the server never saw them). */
  function withPageCells(notebook, page) {
    if (!notebook || !Array.isArray(notebook.cells)) { return notebook; }
    var hasMarkdown = page.cells.some(function (cell) { return cell.type === 'markdown'; });
    if (!hasMarkdown) { return notebook; }
    // Each code cell of the history with the cells of the server's that came before it
    // (a restart's or a restore's note); the lineage note of a fork stays first.
    var byCount = new Map();
    var pending = [];
    var cells = [];
    notebook.cells.forEach(function (cell, index) {
      if (index === 0 && cell.cell_type !== 'code') { cells.push(cell); return; }
      if (cell.cell_type === 'code' && typeof cell.execution_count === 'number' &&
          !byCount.has(cell.execution_count)) {
        byCount.set(cell.execution_count, pending.concat([cell]));
        pending = [];
      } else {
        pending.push(cell);
      }
    });
    page.cells.forEach(function (cell, index) {
      if (cell.type === 'markdown') {
        cells.push({cell_type: 'markdown', id: 'md-' + index, metadata: {},
                    source: cell.editor.value});
      } else if (cell.n !== null && byCount.has(cell.n)) {
        cells.push.apply(cells, byCount.get(cell.n));
        byCount.delete(cell.n);
      }
    });
    byCount.forEach(function (group) { cells.push.apply(cells, group); });  // not on this page
    return Object.assign({}, notebook, {cells: cells.concat(pending)});
  }

  async function downloadNotebook() {
    if (!view) { return; }
    var id = view.id;
    try {
      var response = await request('GET', envPath(id, '/notebook'), undefined,
                                   {accept: 'application/x-ipynb+json, application/json'});
      var notebook = withPageCells(await response.json(), view);
      var blob = new Blob([JSON.stringify(notebook, null, 1) + '\n'],
                          {type: 'application/x-ipynb+json'});
      var url = URL.createObjectURL(blob);
      var link = el('a');
      link.href = url;
      link.download = id + '.ipynb';
      link.hidden = true;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
    } catch (error) {
      setStatus('Download failed: ' + describe(error), 'error');
    }
  }

  async function restartAndRunAll() {
    if (!view) { return; }
    var current = view;
    var env = await envAction('restart');
    if (!env || view !== current) { return; }  // the restart failed (it said why): nothing runs
    // The page is run again from the top: no divider, the cells are the new session's.
    document.querySelectorAll('#cells .restart-divider').forEach(function (line) { line.remove(); });
    current.session = env.session;
    current.runCells(current.cells, {stopOnError: true});
  }

  var helpOpener = null;  // where the focus was when the shortcuts opened: it goes back

  function toggleHelp() {
    var panel = $('help-panel');
    panel.hidden = !panel.hidden;
    $('btn-help').setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) {
      helpOpener = document.activeElement;
      $('btn-help-close').focus();
    } else {
      var back = helpOpener && document.contains(helpOpener) ? helpOpener : $('btn-help');
      helpOpener = null;
      back.focus();
    }
  }

  // -- the variables panel ------------------------------------------------------------------

  function toggleVariables() {
    var panel = $('variables-panel');
    panel.hidden = !panel.hidden;
    $('btn-variables').setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden && view) { view.refreshVariables(); }
  }

  /* The namespace's variables, if the panel shows: after each cell, and when opened. */
  EnvView.prototype.refreshVariables = async function () {
    if ($('variables-panel').hidden || this.closed || view !== this ||
        $('cells').dataset.loaded !== 'true') { return; }
    var asked = this.variablesAsked = (this.variablesAsked || 0) + 1;
    var answer;
    try {
      answer = await api('GET', envPath(this.id, '/variables'), undefined, {signal: this.signal});
    } catch (error) {
      if (!this.closed) { setStatus('Could not list the variables: ' + describe(error), 'error'); }
      return;
    }
    if (this.closed || view !== this || asked !== this.variablesAsked) { return; }  // a newer one
    var body = $('variables-body');
    body.textContent = '';
    var self = this;
    (answer.variables || []).forEach(function (variable) {
      var row = el('tr', 'variable');
      row.tabIndex = 0;
      row.dataset.name = variable.name;
      row.appendChild(el('td', 'variable-name', variable.name));
      row.appendChild(el('td', 'variable-type', variable.type));
      row.appendChild(el('td', 'variable-repr', variable.repr));
      row.appendChild(el('td', 'variable-len', variable.len === undefined ? '' : String(variable.len)));
      function show() { self.inspectVariable(variable.name); }
      row.addEventListener('click', show);
      row.addEventListener('keydown', function (event) {
        if (event.key === 'Enter') { event.preventDefault(); show(); }
      });
      body.appendChild(row);
    });
    $('variables-empty').hidden = (answer.variables || []).length > 0;
  };

  /* Click on a variable: what inspect says of it (type, signature, docstring). */
  EnvView.prototype.inspectVariable = async function (name) {
    var detail = $('variable-detail');
    try {
      var answer = await api('POST', envPath(this.id, '/inspect'), {code: name, detail_level: 0},
                             {signal: this.signal});
      var text = answer.data && answer.data['text/plain'];
      detail.textContent = name + '\n' + stripAnsi(joinText(text || '(nothing to show)'));
      detail.hidden = false;
    } catch (error) {
      setStatus('Could not inspect ' + name + ': ' + describe(error), 'error');
    }
  };

  // -- opening a notebook -----------------------------------------------------------------------

  /* Add a .ipynb's cells to the env's page; nothing runs until asked.  Markdown cells
     are rendered (sanitised), raw ones come as text blocks. */
  async function openNotebook(event) {
    var file = event.target.files && event.target.files[0];
    event.target.value = '';
    if (!file || !view) { return; }
    var notebook;
    try {
      notebook = JSON.parse(await file.text());
    } catch (error) {
      setStatus(file.name + ' is not a notebook (not JSON): ' + error.message, 'error');
      return;
    }
    if (!notebook || !Array.isArray(notebook.cells)) {
      setStatus(file.name + ' is not a notebook: it has no list of cells.', 'error');
      return;
    }
    var target = view;
    var empty = target.cells.filter(function (cell) { return cell.n === null && !cell.editor.value.trim(); });
    empty.forEach(function (cell) { target.cells.splice(target.cells.indexOf(cell), 1); cell.el.remove(); });
    var code = 0, text = 0;
    notebook.cells.forEach(function (cell) {
      var source = joinText(cell && cell.source);
      if (cell && cell.cell_type === 'code') {
        target.addCell(source);
        code++;
      } else if (cell && cell.cell_type === 'markdown') {
        target.addCell(source).setType('markdown', true);
        text++;
      } else if (source.trim()) {
        var block = el('div', 'text-cell', source);
        block.dataset.cellType = String(cell && cell.cell_type);
        $('cells').appendChild(block);
        text++;
      }
    });
    if (!target.cells.length || target.cells[target.cells.length - 1].editor.value.trim()) {
      target.addCell('');
    }
    target.saveDrafts();
    setStatus('Opened ' + file.name + ': ' + code + ' code cell' + (code === 1 ? '' : 's') +
              (text ? ' and ' + text + ' text cell' + (text === 1 ? '' : 's') : '') +
              '; nothing has run.', 'info');
  }

  // -- frames report their height ---------------------------------------------------------

  window.addEventListener('message', function (event) {
    var data = event.data;
    if (!data || data.wsgikernelFrame !== 'height') { return; }
    var frames = document.querySelectorAll('iframe.output-html');
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === event.source) {
        var height = Number(data.height);
        if (isFinite(height) && height >= 0) {
          frames[i].style.height = Math.min(Math.max(Math.ceil(height), 16), MAX_FRAME_HEIGHT) + 'px';
        }
        return;
      }
    }
  });

  // -- start ------------------------------------------------------------------------------------

  async function poll() {
    if (!authOk || document.hidden) { return; }
    try {
      await refreshEnvs();
      if ($('status').dataset.offline === 'true') {
        $('status').dataset.offline = 'false';
        setStatus('Connected again.', 'info');
      }
    } catch (error) {
      if (error.name !== 'ApiError') {
        $('status').dataset.offline = 'true';
        setStatus('The server cannot be reached.', 'error');
      }
    }
  }

  // The next poll is scheduled when this one is done: a slow server never has two
  // listings of ours in flight (setInterval piled them up).
  var polling = false;
  function schedulePoll(delay) {
    pollTimer = setTimeout(async function () {
      if (polling) { return; }  // a turn in flight schedules the next one itself
      polling = true;
      try { await poll(); } finally { polling = false; schedulePoll(); }
    }, delay === undefined ? POLL_MS : delay);
  }

  async function connect() {
    try {
      await refreshEnvs();
    } catch (error) {
      if (!(error.name === 'ApiError' && error.status === 401)) {
        setStatus('Cannot list environments: ' + describe(error), 'error');
      }
      return;
    }
    authOk = true;
    $('btn-forget').hidden = !token;
    document.body.dataset.connected = 'true';
    var wanted = envFromHash();
    if (view) {
      var id = view.id;
      view.close();
      view = null;
      selectEnv(id);
    } else if (wanted && envs.has(wanted)) {
      selectEnv(wanted);
    }
    if (!pollTimer) { schedulePoll(); }
  }

  async function submitToken(event) {
    event.preventDefault();
    var given = $('token-input').value.trim();
    if (!given) { return; }
    try {
      await request('GET', 'envs', undefined, {token: given, quiet401: true});
    } catch (error) {
      var error401 = error.name === 'ApiError' && error.status === 401;
      showTokenDialog(error401 ? 'That token is not valid.' : 'Cannot check the token: ' + describe(error));
      return;
    }
    token = given;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token-input').value = '';
    $('token-dialog').hidden = true;
    connect();
  }

  function forgetToken() {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    $('btn-forget').hidden = true;
    if (view) { closeEnvView(); }
    envs = new Map();
    renderEnvList();
    showTokenDialog('');
  }

  function start() {
    takeTokenFromUrl();
    token = sessionStorage.getItem(TOKEN_KEY) || '';
    $('new-env-form').addEventListener('submit', createEnv);
    $('token-form').addEventListener('submit', submitToken);
    $('btn-forget').addEventListener('click', forgetToken);
    $('btn-restart').addEventListener('click', function () { envAction('restart'); });
    $('btn-interrupt').addEventListener('click', function () { envAction('interrupt'); });
    $('btn-undo').addEventListener('click', function () { envAction('undo'); });
    $('btn-fork').addEventListener('click', function () { envAction('fork'); });
    $('btn-delete').addEventListener('click', deleteEnv);
    $('btn-notebook').addEventListener('click', downloadNotebook);
    $('btn-run-all').addEventListener('click', function () { if (view) { view.runCells(view.cells); } });
    $('btn-restart-run-all').addEventListener('click', restartAndRunAll);
    $('btn-undo-delete').addEventListener('click', function () { if (view) { view.undoDelete(); } });
    $('btn-variables').addEventListener('click', toggleVariables);
    $('btn-open').addEventListener('click', function () { $('file-open').click(); });
    $('file-open').addEventListener('change', openNotebook);
    $('btn-help').addEventListener('click', toggleHelp);
    $('btn-help-close').addEventListener('click', toggleHelp);
    $('help-panel').addEventListener('keydown', function (event) {
      if (event.key === 'Escape') { event.preventDefault(); toggleHelp(); }
    });
    $('btn-add-cell').addEventListener('click', function () {
      if (view) { view.addCell('').focus(); }
    });
    document.addEventListener('visibilitychange', function () {
      // at once, but still one listing at a time: the chain's next turn comes now
      if (!document.hidden && pollTimer) { clearTimeout(pollTimer); pollTimer = null; schedulePoll(0); }
    });
    connect();
  }

  start();
}());
