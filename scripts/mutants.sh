#!/usr/bin/env bash
# `npm run mutants`: mutation testing of the rules that protect people (cargo-mutants). Each rule is broken one way
# at a time (a comparison turned, a condition negated, a function answering a constant) and the native suite must
# fail for each; a mutant that survives is a rule no test protects, to be killed by a new table row or named in
# BENCHMARKS.md as equivalent, with why. Slow (about 8 s a mutant on two cores), so not part of `npm test`.
#
#   npm run mutants                 every guarded file (MUTANTS_JOBS=2 runs two mutants at once)
#   npm run mutants -- trust        only the groups whose name is given (trust consent contact attempts delivery
#                                   template merge absorb sends pressure writer export predictions tcf device)
source "$(dirname "$0")/env.sh"
cd "$ROOT"
MUTANTS_VERSION="27.1.0"
if [ "$(cargo mutants --version 2>/dev/null | awk '{print $2}')" != "$MUTANTS_VERSION" ]; then
  log "installing cargo-mutants $MUTANTS_VERSION (about 3 minutes, once)"
  cargo install --locked cargo-mutants --version "$MUTANTS_VERSION"
fi
# Each group: its files, and the functions of them that hold the rule (empty: every function in them). In
# journeys.rs only the sends are guarded here (refused when queued, claimed as they leave, settled: held by its
# tables, the journey cases and the writer's properties, which is all the group runs), in pressure.rs the budget
# and quiet hours; the rest
# of them is stepping and send windows, which the journey cases cover. In profile.rs only a merge's parts
# (`absorb*`; consent's part is in consent.rs, guarded whole). In predictions, what a merge does to purchases and
# responses, how sends and responses are counted (adaptive pressure reads them), and the fit's summaries leaving
# with an erased profile; the models' arithmetic is held by tests/predictions.rs and the decision case. In tcf, how
# a TC string grants purposes and stands among the other answers; the decoder itself is held field for field by
# tests/tcf.rs against the IAB's encoder. The device group is what leaves for a visitor's browser and that the
# program it runs answers as the edge does (held by the decision cases and the program's properties); the
# format's reader and writer functions are held by the same tests, through every program they read.
declare -A files=(
  [trust]=src/core/model/trust.rs
  [consent]=src/core/model/consent.rs
  [contact]=src/core/model/contact.rs
  [attempts]=src/core/model/attempts.rs
  [delivery]=src/core/engine/delivery.rs
  [template]='src/core/rules/template.rs src/core/rules/scanner.rs'
  [merge]=src/core/engine/merge.rs
  [absorb]=src/core/model/profile.rs
  [sends]=src/core/engine/journeys.rs
  [pressure]=src/core/engine/pressure.rs
  [writer]='src/core/writer/mod.rs src/core/writer/effects.rs'
  [export]='src/core/wire/export.rs src/core/wire/export_ledger.rs src/core/writer/export.rs src/core/engine/apply.rs src/core/wire/events.rs'
  [predictions]='src/core/model/behaviour.rs src/core/wire/predictions.rs'
  [tcf]='src/core/model/tcf.rs src/core/model/consent.rs src/core/model/purpose.rs src/core/engine/apply.rs'
  [device]='src/core/engine/device.rs src/core/engine/program.rs'
)
declare -A only=(
  [sends]='claim|settle|refused|take_cancelled|to_enqueue'
  [pressure]='over_budget|sent_in|quiet_end|offset_of'
  [absorb]='absorb'
  [export]='people|without|is_file_key|person_key|plan|people_of|applied|as_stored|split|flatten|sent_fields|suppressed|DeliveryOutcome::of'
  [predictions]='absorb|record|removed|statements|channel'
  [writer]='erase|handover|restore|split_off|store|refresh_index|put_snapshot|store_journeys|alarm|writes|next_wake|recently_erased|handovers|kv_expiration_for|deliver_due|Writer::claim'
  [device]='left|for_visitor|reads_page|EdgeOnly::code|run|cond'
  [tcf]='TcfPolicy::allows|VendorSet::contains|TcString::restriction|insert_range|TcfPolicy::preferences|TcfSignal::|record_tcf|record_signals|record_event|sent_by|google_consent_mode|Preferences::clear|Preferences::or|effective_for|apply_events'
)
# Groups whose rule tables are all unit tests run only those (`cargo test --lib`) for each mutant: the tcf
# group's files are also read by tests/tcf.rs, whose 10,000 strings take 20 s a run and guard the decoder, not
# these rules.
declare -A test_args=(
  [tcf]='--lib'
  [sends]='--lib --test journeys --test writer_props'
  [device]='--test cases --test device_props'
)
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(trust consent contact attempts delivery template merge absorb sends pressure writer export predictions tcf device)
out="$ROOT/target/mutants"
mkdir -p "$out"
status=0
for g in "${groups[@]}"; do
  file="${files[$g]:-}"
  [ -n "$file" ] || { log "unknown group $g"; exit 2; }
  args=(--no-shuffle -j "${MUTANTS_JOBS:-1}" -o "$out/$g")
  for f in $file; do args+=(-f "$f"); done
  [ -n "${only[$g]:-}" ] && args+=(--re "${only[$g]}")
  log "mutants: $g ($file)"
  extra=()
  [ -n "${test_args[$g]:-}" ] && extra=(-- ${test_args[$g]})
  cargo mutants "${args[@]}" "${extra[@]}" || status=1
  grep -h '' "$out/$g/mutants.out/missed.txt" 2>/dev/null | sed "s/^/  missed: /" >&2 || true
done
# The figures for BENCHMARKS.md: per group, mutants tried, caught, missed, unviable and timed out.
for g in "${groups[@]}"; do
  d="$out/$g/mutants.out"
  count() { [ -f "$d/$1.txt" ] && wc -l < "$d/$1.txt" || echo 0; }
  printf '%-10s caught %4s  missed %3s  unviable %3s  timeout %3s\n' "$g" "$(count caught)" "$(count missed)" \
    "$(count unviable)" "$(count timeout)" >&2
done
exit $status
