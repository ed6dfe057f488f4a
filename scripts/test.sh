#!/usr/bin/env bash
# `npm test`: every check there is, in one run. Installs what is missing first (scripts/bootstrap.sh).
source "$(dirname "$0")/env.sh"
cd "$ROOT"
started=$(date +%s)
declare -a timings=()
step() {
  local name="$1"; shift
  log "── $name"
  local t0; t0=$(date +%s)
  "$@"
  timings+=("$(printf '%4ss  %s' $(( $(date +%s) - t0 )) "$name")")
}

step "install missing tools" "$ROOT/scripts/bootstrap.sh" --browser --schemathesis --duckdb
step "cargo fmt --check" cargo fmt --all -- --check
step "clippy (native)" cargo clippy --quiet --all-targets -- -D warnings
# Tests and benchmarks are native only (their dev-dependencies do not build for wasm32): the library target.
step "clippy (wasm32, edge)" cargo clippy --quiet --lib --target wasm32-unknown-unknown --features edge -- -D warnings
# The browser library exactly as it ships: without the default `batch` feature (see Cargo.toml). Tests and
# benchmarks need `batch`, so this lints the library target only.
step "clippy (wasm32, browser)" cargo clippy --quiet --lib --target wasm32-unknown-unknown --no-default-features \
  --features browser --target-dir "$BROWSER_TARGET_DIR" -- -D warnings
# The device's decide module exactly as it ships (without `batch`, without the tracker).
step "clippy (wasm32, browser-decide)" cargo clippy --quiet --lib --target wasm32-unknown-unknown \
  --no-default-features --features browser-decide --target-dir "$BROWSER_TARGET_DIR" -- -D warnings
step "cargo test (core, decision cases)" cargo test --quiet
step "types: js/edgecdp.d.ts against tests/types/usage.ts (tsc)" "$ROOT/node_modules/.bin/tsc" --noEmit --strict \
  --target es2022 --lib es2022,dom --module esnext --moduleResolution bundler tests/types/usage.ts
step "build: edge and browser Wasm" "$ROOT/scripts/build.sh"
step "size report (SIZE.md)" node scripts/size-report.mjs
# One test file at a time: each starts its own wrangler dev, and the machine has two cores.
step "end-to-end: HTTP against wrangler dev, and Chromium" \
  node --test --test-concurrency=1 tests/e2e/ tests/browser/

log "── timings"
printf '%s\n' "${timings[@]}" >&2
log "all checks passed in $(( $(date +%s) - started ))s"
