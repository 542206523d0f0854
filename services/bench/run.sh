#!/usr/bin/env bash
# Benchmark of GET /accounts/{id} (account + quote service, release builds) against the
# ceiling of a minimal axum "hello" server, in one run on this machine.
#
#   services/bench/run.sh            # wrk -t2 -c32 -d10s, as in services/BENCHMARK.md
#   DURATION=30s services/bench/run.sh
#
# Needs wrk (Debian: apt-get install -y wrk). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
QUOTE_PORT=${QUOTE_PORT:-18080}
ACCOUNT_PORT=${ACCOUNT_PORT:-16767}
CEILING_PORT=${CEILING_PORT:-18081}
GO_BASELINE=2276 # req/s of the original Go account service, same wrk settings (issue 2)

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }

cargo build --quiet --release -p account-service -p quote-service -p healthcheck --bins --example bench_ceiling
bin=target/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn PORT=$QUOTE_PORT ADVERTISE_ADDR=127.0.0.1 "$bin/quote-service" & pids+=($!)
# By name, so the balancer's DNS path (resolve, then connect to the address) is what runs.
RUST_LOG=warn PORT=$ACCOUNT_PORT ADVERTISE_ADDR=127.0.0.1 ACCOUNT_DB="$work/accounts.redb" \
  QUOTE_SERVICE="http://localhost:$QUOTE_PORT" "$bin/account-service" & pids+=($!)
PORT=$CEILING_PORT "$bin/examples/bench_ceiling" & pids+=($!)

for port in $QUOTE_PORT $ACCOUNT_PORT $CEILING_PORT; do
  for _ in $(seq 50); do
    "$bin/healthcheck" --port "$port" --timeout 200ms 2>/dev/null && break
    sleep 0.1
  done
  "$bin/healthcheck" --port "$port" --timeout 1s
done

account_url="http://127.0.0.1:$ACCOUNT_PORT/accounts/10000"
ceiling_url="http://127.0.0.1:$CEILING_PORT/"
echo "sample response: $(exec 3<>/dev/tcp/127.0.0.1/$ACCOUNT_PORT; printf 'GET /accounts/10000 HTTP/1.0\r\n\r\n' >&3; tail -n1 <&3)"

# A short warm-up fills the connection pools and page caches before the measured runs.
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$account_url" >/dev/null
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$ceiling_url" >/dev/null

run() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1" | tee "$work/$2.txt" >&2; }
echo "== ceiling: $ceiling_url" >&2; run "$ceiling_url" ceiling
echo "== account: $account_url" >&2; run "$account_url" account

rps() { awk '/^Requests\/sec:/ {print $2}' "$work/$1.txt"; }
pct() { awk -v p="$2" '$1 == p {print $2}' "$work/$1.txt"; }
errors() { awk '/Non-2xx|Socket errors/ {print}' "$work/$1.txt"; }

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-28s %12s %10s %10s\n' "target" "req/s" "p50" "p99"
printf '%-28s %12s %10s %10s\n' "ceiling (axum hello)" "$(rps ceiling)" "$(pct ceiling 50%)" "$(pct ceiling 99%)"
printf '%-28s %12s %10s %10s\n' "GET /accounts/{id}" "$(rps account)" "$(pct account 50%)" "$(pct account 99%)"
awk -v a="$(rps account)" -v c="$(rps ceiling)" -v g="$GO_BASELINE" \
  'BEGIN { printf "account / ceiling = %.1f %%   account / Go seed (%d req/s) = %.1fx\n", 100*a/c, g, a/g }'
errs="$(errors account)$(errors ceiling)"
if [ -n "$errs" ]; then echo "errors: $errs"; exit 1; fi
