#!/usr/bin/env bash
# Installs what edgecdp needs, idempotently: a second run with everything present takes a second or two.
# `--browser` also installs Debian's Chromium for the browser tests; `--schemathesis`, schemathesis from PyPI;
# `--duckdb`, DuckDB's Python package from PyPI (the export's test reads the files with it).
source "$(dirname "$0")/env.sh"
want_browser=0
want_schemathesis=0
want_duckdb=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    --schemathesis) want_schemathesis=1 ;;
    --duckdb) want_duckdb=1 ;;
  esac
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 5 minutes, once)"
  # --locked first, for the exact dependency versions upstream tested; the registry here has been seen to lack
  # one of those (webpki-roots 1.0.11), in which case the newest compatible versions are used instead.
  cargo install --locked wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" \
    || cargo install --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" != "$WORKER_BUILD_VERSION" ]; then
  log "installing worker-build $WORKER_BUILD_VERSION (about 7 minutes, once)"
  cargo install --locked worker-build --version "$WORKER_BUILD_VERSION" \
    || cargo install --force worker-build --version "$WORKER_BUILD_VERSION"
fi

# npm packages: wrangler (with workerd and esbuild), binaryen's wasm-opt, playwright-core.
if [ ! -x "$ROOT/node_modules/.bin/wrangler" ] || [ ! -x "$WASM_OPT_BIN" ] || [ ! -x "$ESBUILD_BIN" ] \
  || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
  log "installing npm packages"
  (cd "$ROOT" && npm ci --no-audit --no-fund)
fi

if [ $want_browser = 1 ] && [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's Chromium"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

if [ $want_schemathesis = 1 ] && [ ! -x "$SCHEMATHESIS_VENV/bin/st" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI (into $SCHEMATHESIS_VENV)"
  rm -rf "$SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ $want_duckdb = 1 ] && ! "$DUCKDB_VENV/bin/python" -c 'import duckdb' 2>/dev/null; then
  log "installing duckdb $DUCKDB_VERSION from PyPI (into $DUCKDB_VENV)"
  rm -rf "$DUCKDB_VENV"
  python3 -m venv "$DUCKDB_VENV"
  "$DUCKDB_VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION"
fi
