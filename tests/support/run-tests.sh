#!/usr/bin/env bash
# `make test`: every suite, in two phases, so that the wall time fits a 2-core CI host.
#   1. Everything but Molecule and Vagrant, in one pytest session: the TensorFlow runs want both
#      cores to themselves (their timeouts and the labs' watchdogs are sized for that).
#   2. tests/molecule and tests/vagrant side by side: each keeps a core about busy (Ansible and
#      the systemd containers) and waits on Docker the rest of the time, and they share nothing
#      (their own containers, networks and subnets).
# Phase 2 runs whatever phase 1 found; the exit status is 1 if any session failed.
# Usage: run-tests.sh PYTEST [pytest options for every session]
set -uo pipefail
pytest=$1
shift
status=0

"$pytest" tests --ignore=tests/molecule --ignore=tests/vagrant --durations=25 "$@" || status=1
echo "run-tests: phase 1 ended after ${SECONDS} s ($(date -u +%H:%M:%S) UTC)"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A pids
# Job control: without it a background job starts with SIGINT ignored, and pytest would ignore a
# Ctrl-C; with it each session is its own process group, which gets the Ctrl-C passed on and
# cleans up its containers as a foreground one would.
set -m
trap 'kill -INT -- "${pids[@]/#/-}" 2>/dev/null' INT TERM
for suite in molecule vagrant; do
  # No cache plugin: two sessions would write .pytest_cache at once.
  "$pytest" "tests/$suite" -p no:cacheprovider --durations=10 "$@" >"$logs/$suite" 2>&1 &
  pids[$suite]=$!
done
echo "run-tests: tests/molecule and tests/vagrant side by side (pids ${pids[*]}); their output follows when both end"
for suite in molecule vagrant; do
  # A trapped signal ends `wait` early (status > 128): wait again until the session has ended.
  while true; do
    wait "${pids[$suite]}"
    code=$?
    kill -0 "${pids[$suite]}" 2>/dev/null || break
  done
  [[ $code -eq 0 ]] || status=1
done
echo "run-tests: phase 2 ended after ${SECONDS} s in all"
for suite in molecule vagrant; do
  echo
  echo "===== tests/$suite ====="
  cat "$logs/$suite"
done
exit "$status"
