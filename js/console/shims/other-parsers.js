// Stands in for codemirror-json-schema's YAML and JSON5 parsers (about 140 KB minified with their libraries) in the
// console's editor bundle: the configuration is JSON, and the editor only ever asks for the JSON parser.
const unsupported = () => {
  throw new Error('the console edits JSON only');
};
export const parseYAMLDocumentState = unsupported;
export const parseJSON5DocumentState = unsupported;
