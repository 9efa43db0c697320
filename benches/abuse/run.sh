#!/usr/bin/env bash
# Bounds benchmark: every hostile-input attack of tests/abuse.rs (the code is in
# benches/abuse/attacks/) against one stsguard binary, each on a fresh server process started
# as a user would (`serve --dev --no-cluster`, no environment tweaks, only flags every stsguard
# version has), while a probe sends an ordinary review every 20 ms. Prints, per attack, the
# server's peak RSS (VmHWM), the probe's p99 (a failed probe counts as slowest) and the attack's
# own figures, as a Markdown table (docs/measurements/bounds-benchmark.md keeps the results).
#
#   benches/abuse/run.sh [SERVER_BINARY] [Attack,Attack…]
#
# SERVER_BINARY defaults to this tree's release build. Run it once with an old binary and once
# with the new one for a before/after table. Bounded: a request waits at most 60 s, an attack
# runs at most 240 s, and a watchdog kills the server when its RSS passes 3 GiB ("> X" then).
# Attack names: RolesStarFirst RolesSpans RolesNodeSelector Containers5k Containers100k
# Bodies7MbHttp1x64 Bodies7MbH2x64 Bodies7MbH2x200 PrefacelessH2 IdleConnections
# SlowHeadersMetrics MetricLabels HugeFields Expect100Continue.
# Only 127.0.0.1 is used. The driver is the ignored `benchmark` test, built with --release so
# that the client is not what is measured.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:-}
if [ -z "$BIN" ]; then
  cargo build --release --locked --quiet --bin stsguard
  BIN=${CARGO_TARGET_DIR:-target}/release/stsguard
fi
if [ ! -x "$BIN" ]; then
  echo "not an executable: $BIN" >&2
  exit 2
fi
BIN=$(realpath "$BIN")

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
echo "server: $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'))"

export STSGUARD_ABUSE_BIN="$BIN"
export STSGUARD_ABUSE_ONLY="${2:-}"
cargo test --release --locked --quiet --test abuse -- \
  --ignored --exact benchmark --nocapture --test-threads 1
