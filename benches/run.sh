#!/usr/bin/env bash
# Load benchmark: stsguard's /mutate against the floor — the same TLS/HTTP stack doing
# the least any correct webhook must do (parse the body as JSON, echo request.uid) — over TLS
# with HTTP/2 keep-alive, in one run; then p99 at a fixed 500 req/s, the server's RSS, and a fault
# run (certificate rotated the kubelet way mid-run, SIGTERM at the end) that counts failed
# requests. Prints figures; never fails on machine noise. `--quick`: 5 s runs instead of 20 s.
# Throughput and p99 are measured in ROUNDS (default 3) rounds, floor and stsguard alternating
# which goes first, and reported as medians (throughput: of the rounds' ratios): the host's speed
# drifts between runs.
# Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=20
if [ "${1:-}" = "--quick" ]; then SECS=5; fi
WORKERS=${WORKERS:-16}
ROUNDS=${ROUNDS:-3}

cargo build --release --locked --quiet --features bench-tools --bin stsguard --bin floor --bin loadgen
BIN=${STSGUARD_BIN:-target/release/stsguard}   # STSGUARD_BIN: measure another build (e.g. an older one) against the same floor
LOAD=target/release/loadgen
T=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
# The review as the API server sends it: compact JSON (the fixture is stored pretty-printed).
BODY="$T/review.json"
python3 -c 'import json, sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"), separators=(",", ":"))' \
  benches/mysql-k8s-website.create.mutating.json "$BODY"

# Waits for the JSON "serving" line a server wrote to $1, prints field $2.
serving() {
  for _ in $(seq 1 200); do
    if [ -s "$1" ]; then
      python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$1" "$2" && return
    fi
    sleep 0.05
  done
  echo "server did not start" >&2; exit 1
}
# A free port on 127.0.0.1 (stsguard's log, one JSON line per review, goes to /dev/null: a log
# reader would compete for the two cores).
freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 200); do
    curl -fs "http://$1/readyz" > /dev/null 2>&1 && return
    sleep 0.05
  done
  echo "stsguard did not become ready at $1" >&2; exit 1
}
rss() { awk '/VmHWM|VmRSS/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$1/status"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])[sys.argv[1]])' "$1"; }

echo "== $(date -u +%FT%TZ) on $(nproc) cores, $(uname -r); $(rustc --version)"
echo "body: the mysql-k8s-website CREATE review, compact, $(wc -c < "$BODY") bytes"

# rounds WHAT FIELD LABEL [PIN...]: ROUNDS rounds of the floor and stsguard with the same loadgen
# arguments (LG_ARGS), alternating which goes first; prints every run (as WHAT) and leaves FIELD of
# each run's figures in PAIRS (floor, stsguard, floor, ...).
rounds() {
  local what=$1 fld=$2 label=$3 r f s
  shift 3
  one() { "${@:3}" "$LOAD" --addr "$1" --ca "$2" --body "$BODY" --seconds "$SECS" "${LG_ARGS[@]}" --json; }
  PAIRS=()
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
      f=$(one "$FADDR" "$T/floor-ca.pem" "$@"); s=$(one "$SADDR" "$T/sg-ca.pem" "$@")
    else
      s=$(one "$SADDR" "$T/sg-ca.pem" "$@"); f=$(one "$FADDR" "$T/floor-ca.pem" "$@")
    fi
    echo "${label}round $r: floor    $what: ${f%%$'\n'*}"
    echo "${label}round $r: stsguard $what: ${s%%$'\n'*}"
    PAIRS+=("$(echo "$f" | field "$fld")" "$(echo "$s" | field "$fld")")
  done
}

# ab LABEL [PIN...]: throughput at full speed in rounds; prints the median of the rounds' ratios.
ab() {
  LG_ARGS=(--workers "$WORKERS")
  rounds "/mutate h2, $WORKERS connections, ${SECS}s" rps "$@"
  python3 - "$1" "${PAIRS[@]}" <<'PY'
import statistics, sys
label, v = sys.argv[1], [float(x) for x in sys.argv[2:]]
f, s = v[0::2], v[1::2]
ratios = [b / a for a, b in zip(f, s)]
print(f"{label.upper()}THROUGHPUT stsguard / floor per round: " + ", ".join(f"{r:.2f}x" for r in ratios)
      + f"; median {statistics.median(ratios):.2f}x (target >= 0.7x); medians stsguard "
      + f"{statistics.median(s):.0f} req/s, floor {statistics.median(f):.0f} req/s")
PY
}

# lat LABEL [PIN...]: p99 at a fixed 500 req/s (4 connections) in rounds; prints the medians.
lat() {
  LG_ARGS=(--workers 4 --rate 500)
  rounds "at 500 req/s" p99_us "$@"
  python3 - "$1" "${PAIRS[@]}" <<'PY'
import statistics, sys
label, v = sys.argv[1], [float(x) for x in sys.argv[2:]]
f, s = v[0::2], v[1::2]
print(f"{label.upper()}P99 at 500 req/s per round: stsguard " + ", ".join(f"{x:.0f}" for x in s)
      + " us, floor " + ", ".join(f"{x:.0f}" for x in f)
      + f" us; median stsguard {statistics.median(s):.0f} us (target <= 1000 us), floor {statistics.median(f):.0f} us")
PY
}

"target/release/floor" 127.0.0.1:0 "$T/floor-ca.pem" > "$T/floor.serving" &
FLOOR=$!
SADDR=127.0.0.1:$(freeport); SMETRICS=127.0.0.1:$(freeport)
"$BIN" serve --dev --no-cluster --dev-ca-file "$T/sg-ca.pem" --addr "$SADDR" --metrics-addr "$SMETRICS" 2> /dev/null &
SG=$!
FADDR=$(serving "$T/floor.serving" addr)
wait_ready "$SMETRICS"
echo "stsguard idle: $(rss $SG)"

# Warm up both, then the measured runs, same client settings.
"$LOAD" --addr "$FADDR" --ca "$T/floor-ca.pem" --body "$BODY" --seconds 1 --workers "$WORKERS" > /dev/null
"$LOAD" --addr "$SADDR" --ca "$T/sg-ca.pem" --body "$BODY" --seconds 1 --workers "$WORKERS" > /dev/null
ab ""
echo "stsguard under load: $(rss $SG)"
lat ""
echo "RSS stsguard after the runs: $(rss $SG)(target <= 20 MiB)"

# The same, with the servers pinned to the last core and the client to core 0: on two cores
# the client otherwise competes with the server it measures (in a cluster the API server runs
# elsewhere), which makes the unpinned figures swing from run to run.
LAST=$(( $(nproc) - 1 ))
if command -v taskset > /dev/null && [ "$LAST" -ge 1 ]; then
  taskset -a -cp "$LAST" "$FLOOR" > /dev/null
  taskset -a -cp "$LAST" "$SG" > /dev/null
  PIN="taskset -c 0"
  ab "pinned " $PIN
  lat "pinned " $PIN
  echo "RSS stsguard after the pinned runs: $(rss $SG)(target <= 20 MiB)"
fi
kill $FLOOR $SG 2>/dev/null || true
wait $FLOOR $SG 2>/dev/null || true

# Fault run: kubelet-style Secret volume, rotated mid-run; SIGTERM near the end. The client
# stops sending when /readyz turns 503 (as the endpoints controller would), so every request it
# sent must be answered.
D="$T/tls"; mkdir -p "$D"
"$BIN" certs --service localhost --namespace x --out "$D/..ts1" > /dev/null
"$BIN" certs --service localhost --namespace x --out "$D/..ts2" > /dev/null
# (the certificates are for localhost.x.svc; the client uses that name)
ln -s ..ts1 "$D/..data"; ln -s ..data/tls.crt "$D/tls.crt"; ln -s ..data/tls.key "$D/tls.key"
FADDR=127.0.0.1:$(freeport); MADDR=127.0.0.1:$(freeport)
"$BIN" serve --tls-cert "$D/tls.crt" --tls-key "$D/tls.key" --no-cluster --addr "$FADDR" --metrics-addr "$MADDR" \
  --shutdown-delay 1 2> "$T/fault.log" &
FS=$!
wait_ready "$MADDR"
"$LOAD" --addr "$FADDR" --name localhost.x.svc --ca "$D/..ts1/ca.crt" --ca "$D/..ts2/ca.crt" --body "$BODY" \
  --seconds $((SECS * 3)) --workers 8 --reconnect-every 200 --ready-addr "$MADDR" --json > "$T/fault.out" &
LG=$!
sleep $((SECS / 2 + 1))
ln -s ..ts2 "$D/..data_tmp" && mv -T "$D/..data_tmp" "$D/..data"      # the kubelet's atomic swap
echo "fault run: certificate rotated at $(date -u +%T)"
sleep $((SECS / 2 + 1))
kill -TERM $FS
echo "fault run: SIGTERM at $(date -u +%T)"
wait $LG || true
set +e; wait $FS; CODE=$?; set -e
echo "fault run: $(head -1 "$T/fault.out")"
grep '^  error' "$T/fault.out" || true
echo "fault run: certificate reloads logged: $(grep -c '"message":"serving certificate reloaded"' "$T/fault.log" || true)"
echo "FAILED REQUESTS in the fault run: $(field failed < "$T/fault.out") (stopped by readiness: $(field stopped_by_readiness < "$T/fault.out"), server exit code $CODE)"
