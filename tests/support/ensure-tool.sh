#!/usr/bin/env bash
# ensure-tool.sh COMMAND PACKAGE: install a Debian package when its command is missing.
# Only root on an apt host installs; elsewhere a missing tool is a warning outside CI, an error in CI.
set -euo pipefail
cmd=$1 pkg=$2
command -v "$cmd" >/dev/null 2>&1 && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tool: installing $pkg (for $cmd)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  exit 0
fi
msg="ensure-tool: $cmd is missing; install the '$pkg' package"
if [[ "${CI:-}" == "true" ]]; then echo "$msg" >&2; exit 1; fi
echo "$msg (tests that need it will be skipped)" >&2
