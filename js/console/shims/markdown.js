// Stands in for codemirror-json-schema's Markdown renderer (markdown-it with shiki's highlighter: about 450 KB
// minified) in the console's editor bundle. The schema's descriptions are plain sentences, and its messages are set
// with innerHTML by the library, so they are escaped here and shown as text.
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
export function renderMarkdown(text) {
  return escape(text).replace(/`([^`]*)`/g, '<code>$1</code>');
}
