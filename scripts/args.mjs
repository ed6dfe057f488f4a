// The benchmarks' one command-line reader: `--name N` as a number, or the default.
export function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
