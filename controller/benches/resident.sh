#!/usr/bin/env bash
# The operator's resident memory with N services at steady state, as `ps` would show it.
#
#   controller/benches/resident.sh N [VAR=value ...]
#
# Writes N one-service spec files (placed nowhere: `node.labels.swarm-operator-bench==nowhere`,
# so no container runs and the figure is the operator's alone), starts
# `swarm-operator run --specs DIR --status FILE --instance I --allow-empty-prune` as a user
# would (VAR=value pairs go into its environment, e.g. LD_PRELOAD= an other allocator), waits
# until `docker service ls` lists all N, waits SETTLE seconds (default 30), and prints its
# VmRSS, RssAnon (heap and stacks), RssFile (the binary's own pages) and VmHWM, three times 5 s
# apart. Then it deletes
# the files, waits until the operator has removed every service, and stops it.
#
# RESTART=1: once all N are listed and SETTLE has passed, the operator is stopped and started
# again, and the figures are read SETTLE seconds after the restart.
#
# Needs a swarm manager and a release build (BIN, default target/release/swarm-operator). Each
# wait gives up after TIMEOUT seconds (default 600).
# Used for the memory figures in controller/BENCHMARK.md.
set -euo pipefail

n=${1:?usage: resident.sh N [VAR=value ...]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/target/release/swarm-operator}
settle=${SETTLE:-30}
timeout=${TIMEOUT:-600}
label="swarm-operator-resident=$$"
work=$(mktemp -d)
specs=$work/specs
mkdir -p "$specs"
pid=

count() { timeout 60 docker service ls -q --filter "label=$label" | wc -l; }

# Fails once `timeout` seconds have passed since $1 (the wait's start, in epoch seconds).
within() {
    if [ $(($(date +%s) - $1)) -gt "$timeout" ]; then
        echo "gave up after ${timeout} s: $2" >&2
        return 1
    fi
}

cleanup() {
    rm -f "$specs"/*.yaml
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        local since
        since=$(date +%s)
        while [ "$(count)" -gt 0 ] && within "$since" "the operator removing its services"; do sleep 2; done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

for i in $(seq -w 1 "$n"); do
    cat >"$specs/s$i.yaml" <<EOF
apiVersion: swarm-operator.io/v1alpha1
kind: SwarmService
metadata:
  name: resident$$-$i
  labels: {swarm-operator-resident: "$$"}
spec:
  image: swarm-operator-test/busybox:dev
  replicas: 1
  args: [sleep, "3600"]
  endpointMode: dnsrr
  stopSignal: SIGKILL
  stopGracePeriod: 1s
  placement:
    constraints: ["node.labels.swarm-operator-bench==nowhere"]
EOF
done

# Starts the operator as a user would, the VAR=value pairs ($@) in its environment.
start_operator() {
    env "$@" "$bin" run --specs "$specs" --status "$work/status.json" --instance "resident$$" \
        --allow-empty-prune >>"$work/operator.log" 2>&1 &
    pid=$!
}

start_operator "$@"
started=$(date +%s)
while [ "$(count)" -lt "$n" ]; do
    kill -0 "$pid" || { cat "$work/operator.log"; exit 1; }
    within "$started" "$n services listed" || exit 1
    sleep 2
done
echo "$n services listed after $(($(date +%s) - started)) s; reading in $settle s"
if [ -n "${RESTART:-}" ]; then
    # The operator restarted over a swarm that already has every service: what it holds
    # without the burst that created them (the difference is the burst's fragmentation).
    sleep "$settle"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    start_operator "$@"
    echo "restarted; reading in $settle s"
fi
sleep "$settle"
# Three readings 5 s apart: a periodic resync (every 30 s from the start) allocates for a few
# seconds, and a reading that lands on it shows that moment, not what the operator keeps.
for reading in 1 2 3; do
    [ "$reading" = 1 ] || sleep 5
    grep -E '^(VmRSS|RssAnon|RssFile|VmHWM)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '
    echo
done
# The binary's resident size per section kind: its mappings' Rss, Anonymous (pages written:
# relocated pointers, .data) and the rest (clean pages read from the file).
awk -v bin="$(readlink -f "$bin")" '
    /^[0-9a-f]+-[0-9a-f]+ / { mine = ($6 == bin); perms = $2; next }
    mine && $1 == "Rss:" { rss[perms] += $2 }
    mine && $1 == "Anonymous:" { anon[perms] += $2 }
    END { for (p in rss) printf "binary %s: Rss %d kB (Anonymous %d kB)\n", p, rss[p], anon[p] }
' "/proc/$pid/smaps"
