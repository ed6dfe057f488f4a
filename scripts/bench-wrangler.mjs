// A benchmark's copy of wrangler.toml, with parts of the deployment taken out or changed, written beside it (so
// that its relative paths still hold) as `.wrangler-<name>.toml`. Each part is found exactly where the scripts
// expect it, or the copy is refused: a benchmark must not silently measure the full deployment instead.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const EXPORT_PRODUCER = '[[queues.producers]]\nbinding = "EXPORT"\nqueue = "edgecdp-export"\n';
const MAIN = 'main = "js/edge.js"';
const SHELL = 'js/edge.js';
const SHELL_IMPORT = "'../build/index.js'";

/**
 * `exportQueue: false` removes the export's producer (how a deployment turns the export off); `assets: false`
 * removes the `[assets]` section; `main` points the Worker at another build's `index.js`, behind a copy of the
 * JavaScript shell (`js/edge.js`, or `shell` when given: that build's own shell, which may differ from this one's;
 * written as `.wrangler-<name>-edge.js`) that imports it. Answers the copy's path.
 */
export function wranglerCopy(name, { exportQueue = true, assets = true, main, shell: shellSource } = {}) {
  let text = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8');
  const replace = (part, by, what) => {
    if (!text.includes(part)) throw new Error(`wrangler.toml's ${what} is not where this script expects it`);
    text = text.replace(part, by);
  };
  if (!exportQueue) replace(EXPORT_PRODUCER, '', 'EXPORT producer');
  if (!assets) {
    const at = text.indexOf('[assets]\n');
    replace(text.slice(at, text.indexOf('\n\n', at) + 1), '', '[assets] section');
  }
  if (main) {
    let shell = readFileSync(shellSource || join(ROOT, SHELL), 'utf8');
    const imports = shell.split(SHELL_IMPORT).length - 1;
    if (imports !== 2) throw new Error(`${shellSource || SHELL} does not import ${SHELL_IMPORT} twice, as this script expects`);
    shell = shell.replaceAll(SHELL_IMPORT, JSON.stringify(main)).replace("'../package.json'", "'./package.json'");
    const shellPath = `.wrangler-${name}-edge.js`;
    writeFileSync(join(ROOT, shellPath), shell);
    replace(MAIN, `main = ${JSON.stringify(shellPath)}`, 'main');
  }
  const path = join(ROOT, `.wrangler-${name}.toml`);
  writeFileSync(path, text);
  return path;
}

/** Removes a copy `wranglerCopy` wrote, and the shell's copy beside it when it wrote one. */
export function removeCopy(path) {
  if (!path) return;
  rmSync(path, { force: true });
  rmSync(path.replace(/\.toml$/, '-edge.js'), { force: true });
}

/**
 * The copy for another build of edgecdp, measured side by side (`--against DIR`): DIR holds its `index.js` and
 * `index_bg.wasm` (such as the build/ of a worktree at an earlier commit) and, when that build's shell differs from
 * this one's, its `edge.js` (that commit's js/edge.js).
 */
export function againstCopy(name, dir, options = {}) {
  const shell = join(dir, 'edge.js');
  return wranglerCopy(name, { ...options, main: join(dir, 'index.js'), shell: existsSync(shell) ? shell : undefined });
}
