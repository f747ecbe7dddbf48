#!/usr/bin/env bash
# Produces the numbers in BENCHMARKS.md, all in one run on one machine:
#   1. `freshet bench` (its own broker process: throughput, raw fetch, latency, CPU per GB, memory, start-up)
#   2. the same with log.flush.per.append=true
#   3. `freshet bench --phases connections`: the broker's resident memory with 0, 1,000 and 10,000 idle connections
#   4. ../shared/bench/run-peers.sh --kafka against a Freshet broker on 127.0.0.1:9092, beside NATS JetStream and Redis Streams
# Usage: bench/run-benchmarks.sh [--messages N]   (default 2000000 for freshet bench; peers use their own default)
set -euo pipefail
cd "$(dirname "$0")/.."
N=2000000
[[ "${1:-}" == "--messages" ]] && N="$2"
dotnet build -c Release -v quiet -nologo src/Freshet.Cli >/dev/null
FRESHET="dotnet src/Freshet.Cli/bin/Release/net10.0/freshet.dll"
echo "== $(date -u +%F) $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(dotnet --version)"
echo "== freshet bench (default flush policy: no fsync per append, like Kafka)"
$FRESHET bench --messages "$N" --partitions 1,8
echo "== freshet bench, log.flush.per.append=true"
$FRESHET bench --messages $((N / 4)) --partitions 1 --seconds 5 --server-override log.flush.per.append=true
echo "== freshet bench, idle connections (open-files limit $(ulimit -n))"
$FRESHET bench --phases connections --connections 1000,10000
PEERS="${PEERS_DIR:-../shared/bench}"
if [[ -x "$PEERS/run-peers.sh" ]]; then
  DATA=$(mktemp -d -t freshet-peers.XXXXXX)
  $FRESHET server --override listeners=PLAINTEXT://127.0.0.1:9092 --override "log.dirs=$DATA" --log-level warning &
  PID=$!
  trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
  sleep 2
  echo "== $PEERS/run-peers.sh --kafka 127.0.0.1:9092"
  (cd "$PEERS" && ./run-peers.sh --kafka 127.0.0.1:9092)
  echo "broker peak resident memory: $(awk '/VmHWM/ {print $2, $3}' /proc/$PID/status), cpu: $(awk '{print ($14+$15)/100 " s"}' /proc/$PID/stat)"
else
  echo "== $PEERS/run-peers.sh not found: peer comparison skipped"
fi
