// The parts of CodeMirror 6 the console's cells use, bundled as one global, CM
// (scripts/build-console.sh). How a cell puts them together is wsgikernel/static/editor.js.
export {EditorView, keymap, drawSelection, dropCursor, highlightSpecialChars,
        rectangularSelection, crosshairCursor, placeholder} from '@codemirror/view';
export {EditorState, EditorSelection, Compartment, Prec, Transaction} from '@codemirror/state';
export {indentUnit, indentOnInput, bracketMatching, syntaxHighlighting,
        LanguageSupport} from '@codemirror/language';
export {history, historyKeymap, defaultKeymap, indentMore, indentLess, undo, redo,
        undoDepth} from '@codemirror/commands';
export {highlightSelectionMatches, selectNextOccurrence} from '@codemirror/search';
export {pythonLanguage} from '@codemirror/lang-python';
export {classHighlighter} from '@lezer/highlight';
