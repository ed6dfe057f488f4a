#!/usr/bin/env bash
# Builds the Rust floor (benches/floor-rs/, for scripts/bench-cold.mjs and scripts/bench-floor.mjs) the way
# scripts/build.sh builds edgecdp's Worker: worker-build --release, then the same last wasm-opt pass.
source "$(dirname "$0")/env.sh"
cd "$ROOT/benches/floor-rs"
CARGO_TARGET_DIR="$ROOT/target/floor-rs" worker-build --release
"$WASM_OPT_BIN" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  --enable-reference-types --enable-multivalue --zero-filled-memory --low-memory-unused --strip-debug --strip-producers \
  build/index_bg.wasm -o build/index_bg.wasm
log "built: benches/floor-rs/build/index.js + index_bg.wasm ($(wc -c < build/index_bg.wasm) bytes)"
