// Reads everything the local Workers runtime holds for a test's state directory: every live row of every
// SQLite database (KV metadata, Durable Object storage) and every KV value blob, as one searchable text.
// This is what "no key in KV and no Durable Object storage holds anything" is checked against.
//
// It reads live rows, not the databases' free pages or write-ahead logs: bytes there are the storage
// engine's unreclaimed space (SQLite reuses it), not data any key or object still holds.
import { execFileSync } from 'node:child_process';

const DUMP = `
import os, sqlite3, sys
root = sys.argv[1]
only_kv = len(sys.argv) > 2
out = []
for dirpath, _, files in os.walk(root):
    for f in files:
        path = os.path.join(dirpath, f)
        if only_kv and not (os.sep + 'kv' + os.sep in path and os.sep + 'blobs' + os.sep in path):
            continue
        if f.endswith('.sqlite'):
            db = sqlite3.connect('file:' + path + '?mode=ro', uri=True)
            for (table,) in db.execute("select name from sqlite_master where type='table'"):
                for row in db.execute('select * from "%s"' % table.replace('"', '""')):
                    for cell in row:
                        if isinstance(cell, bytes):
                            out.append(cell.decode('latin-1'))
                        elif cell is not None:
                            out.append(str(cell))
            db.close()
        elif os.sep + 'blobs' + os.sep in path:
            with open(path, 'rb') as fh:
                out.append(fh.read().decode('latin-1'))
sys.stdout.write('\\n'.join(out))
`;

export function liveStorageText(stateDir) {
  return execFileSync('python3', ['-c', DUMP, stateDir], { maxBuffer: 256 * 1024 * 1024 }).toString('latin1');
}

/** The values Workers KV holds (its blobs), as one searchable text: what KV's readers are handed. */
export function kvValuesText(stateDir) {
  return execFileSync('python3', ['-c', DUMP, stateDir, 'kv'], { maxBuffer: 256 * 1024 * 1024 }).toString('latin1');
}
