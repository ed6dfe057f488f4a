// CPU time of a process tree, from /proc (Linux): what a benchmark charges to the Worker under `wrangler dev`
// (wrangler and workerd, with the local KV, Durable Object, Queue and D1 emulation they share).
import { readFileSync, readdirSync } from 'node:fs';

const TICK_MS = 1000 / 100; // USER_HZ, 100 on Linux

/** User and system CPU time, in ms, of a process and all its descendants. */
export function treeCpuMs(root) {
  const stats = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      stats.push({ pid: Number(d), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
    } catch { /* the process ended */ }
  }
  const tree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of stats) if (!tree.has(p.pid) && tree.has(p.ppid)) { tree.add(p.pid); grew = true; }
  }
  return stats.filter((p) => tree.has(p.pid)).reduce((a, p) => a + p.ticks, 0) * TICK_MS;
}
