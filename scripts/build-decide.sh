#!/usr/bin/env bash
# Builds the browser decide module (feature `browser-decide`) into www/edgecdp/: its Wasm (decide_bg.wasm)
# and js/slots.js bundled with its wasm-bindgen glue (slots.js). A module of its own, so the tracker's
# download does not grow: the SDK imports slots.js only on pages with slots that decide on the device.
# Run by scripts/build.sh after the tracker (which empties www/edgecdp/ first).
source "$(dirname "$0")/env.sh"
cd "$ROOT"

WASM_FEATURES=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)
# What rustc's wasm32 layout guarantees, told to wasm-opt: memory starts zeroed (each module defines its own), and
# nothing lives below 1 KB (the stack starts at 1 MiB and grows down, data follows it), so the lowest 1024 bytes are
# touched only in the last KB before a stack overflow traps. Worth 1 to 4 KB gzipped per module (SIZE.md).
WASM_LAYOUT=(--zero-filled-memory --low-memory-unused)

log "building the browser decide module"
# The tracker's target directory: the same dependencies with the same features, so they build once.
# At opt-level "s", not the release profile's "z": for this module "s" is both smaller (81.9 against 83.2 KB
# gzipped) and faster (33.5 against 47.3 µs per decision in scripts/bench-growthbook.mjs); "3" is faster still
# (27.8 µs) but 15 KB gzipped larger.
CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
  cargo build --quiet --release --lib --target wasm32-unknown-unknown --no-default-features --features browser-decide \
  --target-dir "$BROWSER_TARGET_DIR"
out="$ROOT/www/edgecdp"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name decide \
  "$BROWSER_TARGET_DIR/wasm32-unknown-unknown/release/edgecdp.wasm"
"$WASM_OPT_BIN" -Oz --converge "${WASM_FEATURES[@]}" "${WASM_LAYOUT[@]}" --strip-debug --strip-producers "$out/decide_bg.wasm" \
  -o "$out/decide_bg.wasm"
cp "$ROOT/js/slots.js" "$out/slots.src.js"
"$ESBUILD_BIN" "$out/slots.src.js" --bundle --format=esm --minify --log-level=warning --outfile="$out/slots.js"
rm "$out/slots.src.js" "$out/decide.js"
log "built: www/edgecdp/slots.js + www/edgecdp/decide_bg.wasm"
