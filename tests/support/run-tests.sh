#!/usr/bin/env bash
# `make test`: every suite, in three pytest sessions side by side, so that a 2-core CI host has
# no idle core while the suite runs:
#   main     every folder but the other lanes' (tests/unit, tests/labs, ...): mostly TensorFlow
#            runs, CPU-bound with gaps (gRPC round trips, restarts, watchdogs); output streams;
#   ansible  tests/ansible then tests/molecule: Ansible against systemd containers, about one
#            core at a time, the rest waiting on Docker, dpkg and systemd;
#   vagrant  tests/vagrant (the Vagrantfile booted on the docker provider, the same mix), then
#            tests/docker and tests/k8s, so that main's last stretch alone is short.
# The lanes share nothing (each its own containers, networks, subnets, state and runtime
# directories). The buffered lanes' output follows when every lane has ended; the exit status is
# 1 if any lane failed.
# Usage: run-tests.sh PYTEST [pytest options for every session]
set -uo pipefail
pytest=$1
shift

declare -A lanes=(
  [main]="tests --ignore=tests/ansible --ignore=tests/molecule --ignore=tests/vagrant
         --ignore=tests/docker --ignore=tests/k8s --durations=25"
  # No cache plugin outside main: sessions would write .pytest_cache at once.
  [ansible]="tests/ansible tests/molecule -p no:cacheprovider --durations=10"
  [vagrant]="tests/vagrant tests/docker tests/k8s -p no:cacheprovider --durations=10"
)
order=(main ansible vagrant)

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A pids
# Job control: without it a background job starts with SIGINT ignored, and pytest would ignore a
# Ctrl-C; with it each session is its own process group, which gets the Ctrl-C passed on and
# cleans up its containers as a foreground one would.
set -m
trap 'kill -INT -- "${pids[@]/#/-}" 2>/dev/null' INT TERM
for lane in "${order[@]}"; do
  # shellcheck disable=SC2086  # the lane's arguments are words
  if [[ $lane == main ]]; then
    "$pytest" ${lanes[$lane]} "$@" &
  else
    "$pytest" ${lanes[$lane]} "$@" >"$logs/$lane" 2>&1 &
  fi
  pids[$lane]=$!
done
echo "run-tests: lanes side by side:$(for l in "${order[@]}"; do printf ' %s (pid %s)' "$l" "${pids[$l]}"; done);" \
  "main's output streams, the others' follows when all end"
declare -A lane_of
for lane in "${order[@]}"; do lane_of[${pids[$lane]}]=$lane; done
status=0
while ((${#pids[@]})); do
  unset ended
  wait -n -p ended "${pids[@]}"
  code=$?
  # A trapped signal ends `wait` early with no job named: wait again until every session ends.
  [[ -n ${ended:-} ]] || continue
  lane=${lane_of[$ended]}
  unset "pids[$lane]"
  [[ $code -eq 0 ]] || status=1
  echo "run-tests: lane $lane ended (exit $code) after ${SECONDS} s ($(date -u +%H:%M:%S) UTC)"
done
for lane in "${order[@]:1}"; do
  echo
  echo "===== lane $lane: ${lanes[$lane]} ====="
  cat "$logs/$lane"
done
exit "$status"
