# Shared settings for the project's scripts: where the tools live, and the versions they must have.
# Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' "$ROOT/Cargo.lock")"
WORKER_BUILD_VERSION="0.8.7"
# worker-build downloads wasm-bindgen, wasm-opt and esbuild unless told where they are; nothing may be
# downloaded from outside the package registries, so it is always told.
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
# The browser build gets its own target directory so that switching between the edge and browser feature sets
# does not rebuild everything each time.
BROWSER_TARGET_DIR="$ROOT/target/browser"
# schemathesis (PyPI) checks the Worker against schema/openapi.json; it lives in its own virtualenv outside the
# clone, so that a fresh clone on the same machine reuses it.
SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/edgecdp/schemathesis-$SCHEMATHESIS_VERSION"
# DuckDB (PyPI) reads the export's files with SQL in tests/e2e/export.test.mjs, as an analyst would.
DUCKDB_VERSION="2.0.1"
export DUCKDB_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/edgecdp/duckdb-$DUCKDB_VERSION"
log() { printf '\033[1m[edgecdp]\033[0m %s\n' "$*" >&2; }
