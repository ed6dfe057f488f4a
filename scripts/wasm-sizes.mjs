// What a Wasm module's code is made of: the size of each function body, summed by crate (the first path
// segment of its Rust name), largest first, and the largest functions.
//
//   node scripts/wasm-sizes.mjs FILE.wasm [--top 30]
//
// It needs the module's name section, which the shipped builds strip: run it on the module before wasm-opt
// (for the decide module, wasm-bindgen's output with --keep-debug), so sizes are before wasm-opt's last pass
// and raw, not gzipped. What it tells is which crates and functions hold the bytes, to know what to cut.
import { readFileSync } from 'node:fs';
import { arg } from './args.mjs';

const file = process.argv[2];
const TOP = arg('top', 30);
const bytes = readFileSync(file);
let pos = 8;
const u32 = () => {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos++];
    result += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return result;
    shift += 7;
  }
};
const name = () => {
  const n = u32();
  const s = bytes.toString('utf8', pos, pos + n);
  pos += n;
  return s;
};

let imported = 0;
const bodies = [];
const names = new Map();
const sections = new Map();
while (pos < bytes.length) {
  const id = bytes[pos++];
  const size = u32();
  const end = pos + size;
  if (id === 0) {
    const custom = name();
    sections.set(`custom ${custom}`, size);
    if (custom === 'name') {
      while (pos < end) {
        const sub = bytes[pos++];
        const subSize = u32();
        const subEnd = pos + subSize;
        if (sub === 1) {
          for (let n = u32(); n > 0; n--) {
            const index = u32();
            names.set(index, name());
          }
        }
        pos = subEnd;
      }
    }
  } else {
    sections.set(['custom', 'type', 'import', 'function', 'table', 'memory', 'global', 'export', 'start', 'element',
      'code', 'data', 'data count'][id] || `section ${id}`, size);
    if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        name();
        name();
        const kind = bytes[pos++];
        if (kind === 0) { imported++; u32(); } else if (kind === 1) { pos++; const f = u32(); u32(); if (f & 1) u32(); } else if (kind === 2) { const f = u32(); u32(); if (f & 1) u32(); } else if (kind === 3) { pos += 2; } else { pos++; u32(); }
      }
    } else if (id === 10) {
      for (let n = u32(), i = 0; i < n; i++) {
        const s = u32();
        bodies.push(s);
        pos += s;
      }
    }
  }
  pos = end;
}

// A Rust name's crate: `<alloc::vec::Vec<T> as core::ops::Drop>::drop` belongs to the type's crate (`alloc`),
// `edgecdp::core::engine::decide::decide` to `edgecdp::core::engine`, for a finer split of the project's own code.
const crateOf = (n) => {
  const s = n.replace(/^[<_&*\s]+|^(dyn |impl |mut )+/g, '').replace(/\[[0-9a-f]+\]/g, '');
  const parts = s.split('::');
  if (parts[0] === 'edgecdp') return parts.slice(0, parts[1] === 'core' ? 4 : 2).join('::').replace(/[<>].*$/, '');
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(parts[0]) && parts.length > 1 ? parts[0] : '(other)';
};
const total = bodies.reduce((a, b) => a + b, 0);
const byCrate = new Map();
const fns = bodies.map((size, i) => ({ size, name: names.get(imported + i) || `#${imported + i}` }));
for (const f of fns) byCrate.set(crateOf(f.name), (byCrate.get(crateOf(f.name)) || 0) + f.size);
const kb = (n) => (n / 1024).toFixed(1).padStart(7);
console.log(`${file}: ${kb(bytes.length)} KB, code ${kb(total)} KB in ${bodies.length} functions`);
console.log('\nsections (KB):');
for (const [s, n] of [...sections].sort((a, b) => b[1] - a[1])) console.log(`${kb(n)}  ${s}`);
console.log('\ncode by crate (KB):');
for (const [c, n] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${kb(n)}  ${c}`);
console.log(`\nlargest functions (KB):`);
for (const f of fns.sort((a, b) => b.size - a.size).slice(0, TOP)) console.log(`${kb(f.size)}  ${f.name.slice(0, 140)}`);
