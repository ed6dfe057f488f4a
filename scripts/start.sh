#!/usr/bin/env bash
# `npm start`: builds everything and serves the Worker with wrangler dev on 127.0.0.1:$PORT (default 8787),
# with local KV and Durable Objects under .wrangler/state and the demo site at /. The demo configuration
# (config/demo.json, write key `demo`) is loaded into local KV unless a configuration is already there. A webhook
# receiver for the demo's journeys listens on 127.0.0.1:8789 (EDGECDP_DEMO_SINK=0 leaves it out).
source "$(dirname "$0")/env.sh"
"$ROOT/scripts/build.sh"
cd "$ROOT"
PORT="${PORT:-8787}"
kv=(--binding EDGECDP --local --persist-to "$ROOT/.wrangler/state")
if wrangler kv key get config:current "${kv[@]}" 2>/dev/null | grep -q "Value not found"; then
  log "loading the demo configuration (config/demo.json) into local KV"
  wrangler kv key put config:v1 --path config/demo.json "${kv[@]}" >/dev/null
  wrangler kv key put config:current 1 "${kv[@]}" >/dev/null
fi
# Offline, wrangler dev fakes request.cf (country US); locally the country comes from the x-edgecdp-country
# header instead, so the demo runs under the default opt-in model unless a request says otherwise.
args=(dev --ip 127.0.0.1 --port "$PORT" --persist-to "$ROOT/.wrangler/state" --show-interactive-dev-session=false
  --var EDGECDP_COUNTRY_SOURCE:header --test-scheduled)
# Secrets: in production they are Worker secrets (SECURITY.md). Locally each is taken from the environment, or
# made once and kept beside the local data, so that restarts keep visitors' cookies and tokens valid. They reach
# wrangler in a file that only this user can read (--env-file), never on its command line, which every user of the
# machine can read (`ps`). mktemp creates the file 0600; it lives as long as wrangler, which reads it again each
# time it reloads the Worker, and is removed when this script ends (Ctrl-C included). With --env-file, wrangler
# reads no .dev.vars.
mkdir -p "$ROOT/.wrangler"
secrets_file="$(umask 077 && mktemp "$ROOT/.wrangler/dev-secrets.XXXXXX")"
sink_pid=""
cleanup() {
  rm -f "$secrets_file"
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
args+=(--env-file "$secrets_file")
# Appends NAME=value to the secrets file as wrangler reads it (dotenv, then dotenv-expand, which would take `$X`
# for another variable): inside a quote the value does not hold, with every `$` escaped. tests/support/worker.mjs's
# envFileLine writes the same; a value that cannot be written so is refused rather than changed.
dev_secret() {
  local name="$1" value="$2" quote="'"
  if [[ "$value" == *"'"* ]]; then quote='`'; fi
  if [[ "$value" == *"$quote"* || "$value" == *$'\r'* || "$value" == *'\' ]]; then
    log "$name cannot be written to an env file: it holds both ' and \`, a carriage return, or ends with \\"
    exit 1
  fi
  printf '%s=%s%s%s\n' "$name" "$quote" "${value//\$/\\\$}" "$quote" >> "$secrets_file"
}
local_secret() {
  local name="$1" file="$ROOT/.wrangler/$2"
  if [ -z "${!name:-}" ]; then
    [ -s "$file" ] || (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$file")
    printf -v "$name" '%s' "$(cat "$file")"
  fi
  dev_secret "$name" "${!name}"
}
# The first-party cookie's signing key.
local_secret EDGECDP_COOKIE_SECRET cookie-secret
# The identity secret, with which a site's backend proves a user id; the demo's sign-in route uses it.
local_secret EDGECDP_IDENTITY_SECRET identity-secret
# The demo's journeys sign their webhooks with this secret and forward with this write key (config/demo.json's
# secretEnv and writeKeyEnv); a receiver on port 8789 verifies and prints what they send.
if [ -z "${EDGECDP_DEMO_WEBHOOK_SECRET:-}" ]; then
  file="$ROOT/.wrangler/demo-webhook-secret"
  [ -s "$file" ] || (umask 077 && printf 'whsec_%s' "$(head -c 24 /dev/urandom | base64)" > "$file")
  EDGECDP_DEMO_WEBHOOK_SECRET="$(cat "$file")"
fi
dev_secret EDGECDP_DEMO_WEBHOOK_SECRET "$EDGECDP_DEMO_WEBHOOK_SECRET"
local_secret EDGECDP_DEMO_FORWARD_KEY demo-forward-key
if [ "${EDGECDP_DEMO_SINK:-1}" = 1 ]; then
  # The receiver takes the secret from its environment, not as an argument, for the same reason.
  EDGECDP_DEMO_WEBHOOK_SECRET="$EDGECDP_DEMO_WEBHOOK_SECRET" node "$ROOT/scripts/webhook-sink.mjs" 8789 &
  sink_pid=$!
fi
if [ -n "${EDGECDP_ADMIN_TOKEN:-}" ]; then
  dev_secret EDGECDP_ADMIN_TOKEN "$EDGECDP_ADMIN_TOKEN"
else
  log "EDGECDP_ADMIN_TOKEN is not set: admin endpoints (profiles, config) will answer 401"
fi
log "serving http://127.0.0.1:$PORT/ (demo site) and http://127.0.0.1:$PORT/v1/*"
# Pinned to wrangler's defaults, so that a shell setting can neither make wrangler skip the secrets file nor hand
# the whole environment to the Worker.
CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV=true CLOUDFLARE_INCLUDE_PROCESS_ENV=false wrangler "${args[@]}"
