#!/usr/bin/env bash
# Builds the edge Worker (build/) and the browser bundle (www/edgecdp/), both release Wasm optimized by wasm-opt.
source "$(dirname "$0")/env.sh"
"$ROOT/scripts/bootstrap.sh" "$@"
cd "$ROOT"

WASM_FEATURES=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)
# What rustc's wasm32 layout guarantees, told to wasm-opt: memory starts zeroed (each module defines its own), and
# nothing lives below 1 KB (the stack starts at 1 MiB and grows down, data follows it), so the lowest 1024 bytes are
# touched only in the last KB before a stack overflow traps. Worth 1 to 4 KB gzipped per module (SIZE.md).
WASM_LAYOUT=(--zero-filled-memory --low-memory-unused)

log "building the edge Worker"
worker-build --release --features edge
# worker-build's wasm-opt pass keeps the name section (about 175 KB); a last -Oz pass drops it.
"$WASM_OPT_BIN" -Oz "${WASM_FEATURES[@]}" "${WASM_LAYOUT[@]}" --strip-debug --strip-producers build/index_bg.wasm -o build/index_bg.wasm

log "building the browser bundle"
# Without the default `batch` feature: the browser validates single events and needs none of the edge's body
# parsers (see Cargo.toml).
cargo build --quiet --release --lib --target wasm32-unknown-unknown --no-default-features --features browser \
  --target-dir "$BROWSER_TARGET_DIR"
out="$ROOT/www/edgecdp"
rm -rf "$out" && mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name edgecdp \
  "$BROWSER_TARGET_DIR/wasm32-unknown-unknown/release/edgecdp.wasm"
# -Oz for size, repeated until it stops shrinking (--converge, about 0.2 KB gzipped); the feature flags match
# what rustc emits for wasm32-unknown-unknown today.
"$WASM_OPT_BIN" -Oz --converge "${WASM_FEATURES[@]}" "${WASM_LAYOUT[@]}" --strip-debug --strip-producers "$out/edgecdp_bg.wasm" \
  -o "$out/edgecdp_bg.wasm"
# Minify what the browser downloads (esbuild comes with wrangler). The loader is minified alone; the SDK is
# bundled with the wasm-bindgen glue into one module (about 0.3 KB gzipped less than two files), which the
# loader imports, and which fetches the Wasm beside it, only when consent allows.
"$ESBUILD_BIN" "$ROOT/js/loader.js" --minify --log-level=warning --outfile="$out/loader.js"
cp "$ROOT/js/sdk.js" "$out/sdk.src.js"
"$ESBUILD_BIN" "$out/sdk.src.js" --bundle --format=esm --minify --log-level=warning --outfile="$out/sdk.js"
rm "$out/sdk.src.js" "$out/edgecdp.js"
# The console's libraries, beside it, so it works from the Worker alone with no CDN: uPlot for charts (MIT; 51 KB,
# 22 KB gzipped) and the configuration editor, CodeMirror 6 with codemirror-json-schema (MIT), bundled into one
# module loaded only by the configuration view (scripts/bundle-console.mjs prints its size).
mkdir -p "$ROOT/www/console/vendor"
cp "$ROOT/node_modules/uplot/dist/uPlot.iife.min.js" "$ROOT/node_modules/uplot/dist/uPlot.min.css" "$ROOT/www/console/vendor/"
node "$ROOT/scripts/bundle-console.mjs"
# The API's descriptions, served from the assets by GET /v1/openapi.json and /v1/config/schema (and here too).
mkdir -p "$out/schema" && cp "$ROOT/schema/openapi.json" "$ROOT/schema/config.schema.json" "$out/schema/"
# The decide module for slots decided on the device: a separate download, see scripts/build-decide.sh.
"$ROOT/scripts/build-decide.sh"
log "built: build/index.js + build/index_bg.wasm, www/edgecdp/"
