// The console's configuration editor: CodeMirror 6 with completion and hover help from the configuration's JSON
// Schema (codemirror-json-schema), and inline errors from the same schema (json-schema-library) and from the
// server's own check (POST /v1/config/validate), each shown at its path. Bundled by scripts/bundle-console.mjs into www/console/vendor/editor.js, which the
// console imports only when the configuration view opens.
//
// Diagnostics, in order of authority:
//   1. not JSON: the parse error alone (nothing else can be said);
//   2. the server's problems, at their paths: the compiler is the judge of what gets saved;
//   3. the schema's, where the server said nothing at the same place (the schema knows less than the compiler
//      but answers while the server is unreachable, and its wording adds the expected type).
import { EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection, hoverTooltip } from '@codemirror/view';
import { EditorState } from '@codemirror/state';
import { json, jsonLanguage, jsonParseLinter } from '@codemirror/lang-json';
import { linter, lintGutter, lintKeymap } from '@codemirror/lint';
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { ensureSyntaxTree, syntaxTree, bracketMatching, indentOnInput, syntaxHighlighting, defaultHighlightStyle, foldGutter, foldKeymap } from '@codemirror/language';
import { jsonCompletion, jsonSchemaHover, stateExtensions } from 'codemirror-json-schema';
import { Draft07 } from 'json-schema-library';
import { disableErrorLogging } from 'best-effort-json-parser';

// The half-typed document is parsed best-effort for completion; its parser would log each attempt as an error.
disableErrorLogging();

/// The schema as completion and hover read it. codemirror-json-schema follows neither a `$ref` inside `items` nor
/// the branches of a `oneOf` whose data does not match one yet (a step being written matches none), so it would
/// offer nothing below the top level. This copy has every `$defs` reference inlined (a recursive one, such as a
/// condition inside `all`, twice at most) and every `anyOf`/`oneOf`/`allOf`/`if`/`then`/`else` folded into its
/// parent: the union of the branches' properties, values and types. It is never used to validate; validation
/// reads the schema itself.
export function completionSchema(root) {
  const defs = root.$defs || {};
  const combinators = ['anyOf', 'oneOf', 'allOf', 'if', 'then', 'else'];
  const walk = (node, stack) => {
    if (node === true) return {};
    if (Array.isArray(node)) return node.map((n) => walk(n, stack));
    if (!node || typeof node !== 'object') return node;
    if (typeof node.$ref === 'string' && node.$ref.startsWith('#/$defs/')) {
      const name = node.$ref.slice('#/$defs/'.length);
      const { $ref, ...rest } = node;
      if (!defs[name] || stack.filter((n) => n === name).length >= 2) return walk(rest, stack);
      return merge(walk(defs[name], [...stack, name]), walk(rest, stack));
    }
    let out = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '$defs' || k === 'required' || combinators.includes(k)) continue;
      out[k] = k === 'properties' || k === 'patternProperties'
        ? Object.fromEntries(Object.entries(v).map(([p, s]) => [p, walk(s, stack)])) : walk(v, stack);
    }
    for (const k of combinators) for (const branch of [].concat(node[k] || [])) out = merge(out, walk(branch, stack));
    if ('const' in out) { out.enum = [...new Set([...(out.enum || []), out.const])]; delete out.const; }
    return out;
  };
  // Adds what `b` knows to `a`: its properties (a property `a` knows only as `{}` takes `b`'s), values, types.
  const merge = (a, b) => {
    const out = { ...b, ...a };
    if (a.properties || b.properties) {
      out.properties = { ...(a.properties || {}) };
      for (const [k, v] of Object.entries(b.properties || {})) if (!out.properties[k] || !Object.keys(out.properties[k]).length) out.properties[k] = v;
    }
    if (a.enum || b.enum) out.enum = [...new Set([...(a.enum || []), ...(b.enum || [])])];
    if (a.type && b.type) out.type = [...new Set([].concat(a.type, b.type))];
    if (a.additionalProperties === false || b.additionalProperties === false) delete out.additionalProperties;
    return out;
  };
  return walk(root, []);
}

/// A key as one JSON pointer segment (RFC 6901: `~` as `~0`, `/` as `~1`).
const pointerKey = (k) => String(k).replace(/~/g, '~0').replace(/\//g, '~1');

/// The JSON pointer (as `locate` keys its map) of a compiler path such as
/// `slots.home.hero.blocks[2].when`, walked against the parsed document because ids may contain dots: at each
/// object the longest key that the rest of the path starts with wins. Answers the deepest pointer that exists.
export function pointerFor(data, path) {
  let pointer = '';
  let node = data;
  let rest = path || '';
  while (rest.length && node !== null && typeof node === 'object') {
    if (rest[0] === '.') rest = rest.slice(1);
    const index = /^\[(\d+)\]/.exec(rest);
    if (index) {
      if (!Array.isArray(node) || Number(index[1]) >= node.length) break;
      pointer += `/${index[1]}`;
      node = node[Number(index[1])];
      rest = rest.slice(index[0].length);
      continue;
    }
    if (Array.isArray(node)) break;
    const key = Object.keys(node)
      .filter((k) => rest === k || rest.startsWith(`${k}.`) || rest.startsWith(`${k}[`))
      .sort((a, b) => b.length - a.length)[0];
    if (key === undefined) break;
    pointer += `/${pointerKey(key)}`;
    node = node[key];
    rest = rest.slice(key.length);
  }
  return pointer;
}

const VALUES = ['Object', 'Array', 'String', 'Number', 'True', 'False', 'Null'];

/// Where each value of a document that parses is, by JSON pointer: `{ valueFrom, valueTo }`, with `keyFrom` and
/// `keyTo` for an object's member. Walked over the editor's own syntax tree (codemirror-json-schema's map of the
/// same reads the `:` as the value with @lezer/json 1.x).
export function locate(state) {
  const tree = ensureSyntaxTree(state, state.doc.length, 2000) || syntaxTree(state);
  const map = new Map();
  const visit = (node, pointer, key) => {
    map.set(pointer, { valueFrom: node.from, valueTo: node.to, ...key });
    if (node.name === 'Object') {
      for (let member = node.firstChild; member; member = member.nextSibling) {
        if (member.name !== 'Property') continue;
        const name = member.getChild('PropertyName');
        let value = name && name.nextSibling;
        while (value && !VALUES.includes(value.name)) value = value.nextSibling;
        let k;
        try { k = JSON.parse(state.doc.sliceString(name.from, name.to)); } catch { continue; }
        if (value) visit(value, `${pointer}/${pointerKey(k)}`, { keyFrom: name.from, keyTo: name.to });
      }
    } else if (node.name === 'Array') {
      let i = 0;
      for (let item = node.firstChild; item; item = item.nextSibling) if (VALUES.includes(item.name)) visit(item, `${pointer}/${i++}`);
    }
  };
  let top = tree.topNode.firstChild;
  while (top && !VALUES.includes(top.name)) top = top.nextSibling;
  if (top) visit(top, '');
  return map;
}

/// Where a compiler path points in the document: the value's range (or the name's, for a field the compiler refuses),
/// falling back to the nearest enclosing value that exists, then to the start.
function rangeFor(parsed, path, key) {
  const pointer = pointerFor(parsed.data, path);
  const at = parsed.pointers.get(pointer);
  if (!at || at.valueFrom === undefined) return { from: 0, to: 0 };
  // A refused field is underlined at its name only when the path reached it (not at an enclosing value).
  if (key && at.keyFrom !== undefined && pathOf(parsed.data, pointer) === path) return { from: at.keyFrom, to: at.keyTo };
  return { from: at.valueFrom, to: at.valueTo };
}

/// The compiler's spelling of a JSON pointer into `data` (`/segments/6/when` → `segments[6].when`).
export function pathOf(data, pointer) {
  let path = '';
  let node = data;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    path += Array.isArray(node) ? `[${key}]` : path ? `.${key}` : key;
    node = node == null ? undefined : node[key];
  }
  return path;
}

// The schema errors that name a key rather than a value (an unknown or missing field).
const KEY_ERRORS = ['NoAdditionalPropertiesError', 'RequiredPropertyError', 'InvalidPropertyNameError', 'ForbiddenPropertyError'];

/// A json-schema-library error as a diagnostic at its place, worded like the server's problems (path: message).
function schemaDiagnostic(parsed, e) {
  const pointer = ((e.data && e.data.pointer) || '#').replace(/^#/, '');
  const key = e.data && e.data.property;
  // An unknown property is reported at the object; its key is the place to underline.
  const at = (key !== undefined && KEY_ERRORS.includes(e.name) && parsed.pointers.get(`${pointer}/${key}`)) || parsed.pointers.get(pointer);
  const keyed = key !== undefined && KEY_ERRORS.includes(e.name) && parsed.pointers.has(`${pointer}/${key}`);
  const message = String(e.message).replace(/ in `#[^`]*`/g, '').replace(/ at `#[^`]*`/g, '').replace(/`([^`]*)`/g, '"$1"');
  const range = !at ? { from: 0, to: 0 } : keyed ? { from: at.keyFrom, to: at.keyTo } : { from: at.valueFrom, to: at.valueTo };
  return { ...range, severity: 'error', message: `${pathOf(parsed.data, pointer) || '(the whole configuration)'}: ${message} (schema)`, source: 'schema' };
}

/// How the editor looks. It lives in a shadow root, where CodeMirror's style modules become constructed style sheets:
/// in the document itself they would be <style> elements, which the console's CSP (style-src 'self') refuses.
/// Custom properties (--accent) inherit through the shadow boundary.
const look = EditorView.theme({
  '&': { height: '480px', border: '1px solid #aeb6c4', borderRadius: '6px', background: '#fff', fontSize: '13px' },
  '&.cm-focused': { outline: '2px solid var(--accent, #2f5fd0)', outlineOffset: '1px' },
  '.cm-scroller': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace' },
  '.cm-tooltip-hover, .cm-completionInfo': { maxWidth: '420px', whiteSpace: 'normal', fontFamily: 'system-ui, sans-serif' },
  '.cm-diagnostic': { fontFamily: 'system-ui, sans-serif' },
});

/// Creates the editor in `parent` (inside a shadow root of its own). `options.validate(text)` asks the server and answers `{ ok: true }`,
/// `{ problems: [{ path, message }] }`, or `null` when it could not be asked. `options.onDiagnostics(list)` hears
/// the outcome of every check (each diagnostic with its line, and whether the server answered), for the console's
/// problems list.
export function createEditor(parent, { doc, schema, label, describedBy, validate, onDiagnostics, onChange }) {
  // Every finished check is reported, an empty one too (the console lists the problems and marks the check done).
  const told = (state, list, serverAnswered = false) => {
    if (onDiagnostics) onDiagnostics(list.map((d) => ({ from: d.from, line: state.doc.lineAt(d.from).number, message: d.message, source: d.source })), { serverAnswered });
    return list;
  };
  const parseLint = jsonParseLinter();
  const draft = new Draft07(schema);
  const source = async (view) => {
    const state = view.state;
    const notJson = parseLint(view);
    if (notJson.length) return told(state, notJson.map((d) => ({ ...d, source: 'JSON' })));
    const text = state.doc.toString();
    const answer = validate ? await validate(text).catch(() => null) : null;
    // A newer edit has started its own run; this one's positions describe a document that is gone.
    if (view.state.doc.toString() !== text) return [];
    const parsed = { data: JSON.parse(text), pointers: locate(state) };
    let fromSchema = [];
    try {
      fromSchema = draft.validate(parsed.data).map((e) => schemaDiagnostic(parsed, e));
    } catch { /* a schema the library cannot follow says nothing rather than something wrong */ }
    const fromServer = ((answer && answer.problems) || []).map((p) => ({
      ...rangeFor(parsed, p.path, /^unknown field/.test(p.message)),
      severity: 'error',
      message: `${p.path || '(the whole configuration)'}: ${p.message}`,
      path: p.path || '',
      source: 'server',
    }));
    const covered = (d) => fromServer.some((s) => s.from <= d.from && d.to <= s.to && s.to > s.from);
    return told(state, [...fromServer, ...fromSchema.filter((d) => !covered(d))], answer !== null);
  };
  const changes = EditorView.updateListener.of((u) => { if (u.docChanged && onChange) onChange(); });
  const root = parent.attachShadow({ mode: 'open' });
  const mount = document.createElement('div');
  root.append(mount);
  const view = new EditorView({
    parent: mount,
    root,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(), foldGutter(), lintGutter(), history(), drawSelection(), indentOnInput(), bracketMatching(),
        closeBrackets(), highlightActiveLine(), syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        autocompletion({ activateOnTyping: true, icons: false }),
        // Tab is left to the browser so a keyboard user can leave the editor; Ctrl-Space completes, Ctrl-Shift-M
        // lists the problems, Ctrl-[ and Ctrl-] indent.
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...foldKeymap, ...completionKeymap, ...lintKeymap]),
        json(),
        jsonLanguage.data.of({ autocomplete: jsonCompletion() }),
        hoverTooltip(jsonSchemaHover()),
        stateExtensions(completionSchema(schema)),
        linter(source, { delay: 500 }),
        changes,
        look,
        EditorView.contentAttributes.of({ 'aria-label': label, ...(describedBy ? { 'aria-describedby': describedBy } : {}) }),
      ],
    }),
  });
  return {
    view,
    get value() { return view.state.doc.toString(); },
    set value(text) { view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }); },
    focus() { view.focus(); },
    /// Moves the cursor to a position and shows it (the problems list's "go to" buttons).
    reveal(pos) {
      view.dispatch({ selection: { anchor: pos }, effects: EditorView.scrollIntoView(pos, { y: 'center' }) });
      view.focus();
    },
  };
}
