/* A cell's editor: CodeMirror 6 (vendored as codemirror.min.js, the global CM, built by
   scripts/build-console.sh) behind the few calls the console makes.

   CodeMirror gives the editing: Python highlighting, indentation that follows the
   syntax, bracket matching, several cursors (Ctrl/Cmd-click, Alt-drag, Ctrl/Cmd-D),
   undo and redo.  The console keeps what goes through the API: Enter's indent (the
   kernel's is_complete), Tab completion, Shift-Tab help and the cell keys.  Its key
   handler runs before CodeMirror's keymap and takes a key by calling preventDefault.

   The surface is a textarea's where the console used one (value, selectionStart,
   selectionEnd, setSelectionRange, focus, hidden), plus replace(), coords() and
   shift().  Positions are UTF-16 offsets, as a textarea's; a selection means the main
   one.  Risk: a key CodeMirror binds and the console also wants goes to the console
   (Escape, Tab, Enter, Alt-Up/Down, Ctrl/Cmd-Enter): those keep their console meaning.
*/
(function () {
  'use strict';

  var INDENT = '    ';

  function CellEditor(text, label) {
    var self = this;
    this.handlers = {keydown: [], input: [], blur: []};
    this.language = new CM.Compartment();
    this.view = new CM.EditorView({
      state: CM.EditorState.create({doc: text || '', extensions: [
        CM.Prec.highest(CM.EditorView.domEventHandlers({
          keydown: function (event) { self.emit('keydown', event); return event.defaultPrevented; },
          blur: function (event) { self.emit('blur', event); return false; }
        })),
        CM.EditorView.cspNonce.of(STYLE_NONCE),  // the page's policy allows this <style>
        CM.history(),
        CM.drawSelection(),
        CM.dropCursor(),
        CM.highlightSpecialChars(),
        CM.EditorState.allowMultipleSelections.of(true),
        CM.rectangularSelection(),
        CM.crosshairCursor(),
        CM.indentOnInput(),
        CM.bracketMatching(),
        CM.highlightSelectionMatches(),
        CM.indentUnit.of(INDENT),
        CM.EditorState.tabSize.of(4),
        CM.syntaxHighlighting(CM.classHighlighter),  // tok-* classes, coloured in style.css
        this.language.of(PYTHON),
        CM.keymap.of([{key: 'Mod-d', run: CM.selectNextOccurrence, preventDefault: true}]
                     .concat(CM.historyKeymap, CM.defaultKeymap)),
        CM.EditorView.editorAttributes.of({class: 'editor'}),  // CodeMirror owns the class
        CM.EditorView.contentAttributes.of({'aria-label': label, autocapitalize: 'off',
                                            autocorrect: 'off', spellcheck: 'false'}),
        CM.EditorView.updateListener.of(function (update) {
          if (update.docChanged) { self.emit('input'); }
        })
      ]})
    });
    this.dom = this.view.dom;
  }

  var PYTHON = new CM.LanguageSupport(CM.pythonLanguage);
  var nonceMeta = document.querySelector('meta[name="style-nonce"]');
  var STYLE_NONCE = (nonceMeta && nonceMeta.content) || '';

  CellEditor.prototype.emit = function (type, event) {
    this.handlers[type].forEach(function (handler) { handler(event); });
  };

  CellEditor.prototype.addEventListener = function (type, handler) {
    this.handlers[type].push(handler);
  };

  /* 'code' highlights and indents Python; 'markdown' is plain text. */
  CellEditor.prototype.setLanguage = function (type) {
    this.view.dispatch({effects: this.language.reconfigure(type === 'code' ? PYTHON : [])});
  };

  Object.defineProperties(CellEditor.prototype, {
    value: {
      get: function () { return this.view.state.doc.toString(); },
      // Text put in from outside (a cell loaded, a notebook opened) is not an edit to undo.
      set: function (text) {
        this.view.dispatch({changes: {from: 0, to: this.view.state.doc.length, insert: text},
                            annotations: CM.Transaction.addToHistory.of(false)});
      }
    },
    selectionStart: {get: function () { return this.view.state.selection.main.from; }},
    selectionEnd: {get: function () { return this.view.state.selection.main.to; }},
    hidden: {
      get: function () { return this.dom.hidden; },
      set: function (hide) { this.dom.hidden = hide; }
    },
    hasFocus: {get: function () { return this.view.hasFocus; }}
  });

  CellEditor.prototype.focus = function () { this.view.focus(); };

  CellEditor.prototype.destroy = function () { this.view.destroy(); };

  CellEditor.prototype.setSelectionRange = function (start, end) {
    this.view.dispatch({selection: {anchor: start, head: end}, scrollIntoView: true});
  };

  /* Replace start..end with text, the caret after it: one step of undo. */
  CellEditor.prototype.replace = function (start, end, text) {
    this.view.dispatch({changes: {from: start, to: end, insert: text},
                        selection: {anchor: start + text.length},
                        scrollIntoView: true, userEvent: 'input'});
  };

  /* Indent (or dedent) every line the selections touch. */
  CellEditor.prototype.shift = function (dedent) {
    (dedent ? CM.indentLess : CM.indentMore)(this.view);
  };

  /* The caret at index, in pixels from the editor's own top-left corner. */
  CellEditor.prototype.coords = function (index) {
    var at = this.view.coordsAtPos(index);
    var box = this.dom.getBoundingClientRect();
    if (!at) { return {left: 0, top: 0, height: 0}; }
    return {left: at.left - box.left, top: at.top - box.top, height: at.bottom - at.top};
  };

  window.CellEditor = CellEditor;
})();
