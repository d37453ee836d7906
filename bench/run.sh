#!/usr/bin/env bash
# The router benchmark (bench/bench.py, docs/PERFORMANCE.md): installs what it needs from the
# distribution's packages (wrk, nginx, haproxy, python3, taskset), builds afemu in release mode, and
# runs afemu's router against nginx and HAProxy in front of the same two backends.
#
#   bench/run.sh                          # the default run: 9 repeats × 5 s, 1 and 32 connections
#   PIN=0 WORKERS=2 bench/run.sh          # nothing pinned, two workers for each proxy
#   REPEATS=3 DURATION=3 bench/run.sh     # quicker
#   RESULTS=/tmp/bench.md bench/run.sh    # also write the tables to a file
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

if [ -z "${AFEMU:-}" ]; then
  cargo build --release --locked --bin afemu >&2
  AFEMU="${CARGO_TARGET_DIR:-target}/release/afemu"
fi
export AFEMU
exec python3 bench/bench.py
