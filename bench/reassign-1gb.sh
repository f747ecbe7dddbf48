#!/usr/bin/env bash
# Times moving one 1 GiB partition to a newly joined broker with
# `freshet partitions reassign --execute --wait` (the figure in BENCHMARKS.md, "Reassigning a partition"):
#   1. builds src/Freshet.Cli in Release and uses its `freshet` binary
#   2. `freshet cluster up --nodes 3` on loopback: clients on 127.0.0.1:$PORT..$PORT+2, the controller
#      quorum on 127.0.0.1:$CPORT..$CPORT+2, data in a temporary directory
#   3. a topic of one partition, replication factor 1 (the controller picks its broker), filled with
#      --mib MiB (default 1024) of 1,024-byte records, uncompressed, through `freshet produce`
#   4. a fourth node joins, broker only (process.roles=broker, the same voters), on 127.0.0.1:$PORT+3
#   5. `freshet partitions reassign --topic T --partition 0 --replicas 4 --execute --wait`: node 4 copies the
#      whole log from the leader (replica fetches), joins the ISR, and the old replica is dropped
#   6. prints "reassigned X GiB in S s (M MB/s)": X is the size of the partition's .log files on the old
#      broker, S the wait the command reports (from the controller accepting the move to node 4 in sync
#      and the old replica gone); the command's wall time, dotnet start-up included, is printed too.
# Bounded: one produce of --mib MiB and one move, loopback only; every process it started is stopped and
# the data directory removed at exit. Needs about 2.5x --mib of free disk under ${TMPDIR:-/tmp}.
# Usage: bench/reassign-1gb.sh [--mib N]   (PORT=24092 CPORT=25092 by default: outside the ephemeral range)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=1024
[[ "${1:-}" == "--mib" ]] && MIB="$2"
PORT="${PORT:-24092}"
CPORT="${CPORT:-25092}"
TOPIC=reassign-bench
RECORDS=$((MIB * 1024))   # 1,024-byte records

dotnet build -c Release -v quiet -nologo src/Freshet.Cli >/dev/null
FRESHET="$PWD/src/Freshet.Cli/bin/Release/net10.0/freshet"
DATA=$(mktemp -d -t freshet-reassign.XXXXXX)
CLUSTER_PID=""
NODE4_PID=""
cleanup() {
  for pid in $NODE4_PID $CLUSTER_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $NODE4_PID $CLUSTER_PID; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap cleanup EXIT
wait_for() { # file pattern seconds
  for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1:" >&2; tail -20 "$1" >&2; exit 1
}

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

echo "== $(date -u +%F) $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(dotnet --version); data in $DATA"
"$FRESHET" cluster up --nodes 3 --port "$PORT" --controller-port "$CPORT" --data "$DATA" --log-level warning >"$DATA/cluster.log" 2>&1 &
CLUSTER_PID=$!
wait_for "$DATA/cluster.log" "cluster of 3 nodes is ready" 120
B="127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))"

"$FRESHET" topics create --topic "$TOPIC" --partitions 1 --replication-factor 1 --bootstrap-server "$B" >/dev/null
LINE=$(head -c 1023 /dev/zero | tr '\0' 'x')
echo "== producing $RECORDS records of 1,024 bytes"
START=$(date +%s.%N)
{ yes "$LINE" || true; } | head -n "$RECORDS" | "$FRESHET" produce --topic "$TOPIC" --bootstrap-server "$B" --timeout-ms 120000
echo "produce took $(elapsed "$START") s"
SRC=$("$FRESHET" topics describe --topic "$TOPIC" --format json --bootstrap-server "$B" | grep -o '"leader": [0-9]*' | head -1 | grep -o '[0-9]*$')
BYTES=$(cat "$DATA/node-$SRC/$TOPIC-0/"*.log | wc -c)
echo "partition $TOPIC-0 is on node $SRC: $BYTES bytes of log"

CLUSTER_ID=$(grep '^cluster.id=' "$DATA/node-1/meta.properties" | cut -d= -f2)
VOTERS="1@127.0.0.1:$CPORT,2@127.0.0.1:$((CPORT + 1)),3@127.0.0.1:$((CPORT + 2))"
"$FRESHET" server --log-level warning --override node.id=4 --override "cluster.id=$CLUSTER_ID" --override process.roles=broker \
  --override "listeners=PLAINTEXT://127.0.0.1:$((PORT + 3))" --override "advertised.listeners=PLAINTEXT://127.0.0.1:$((PORT + 3))" \
  --override "controller.quorum.voters=$VOTERS" --override "log.dirs=$DATA/node-4" >"$DATA/node-4.log" 2>&1 &
NODE4_PID=$!
wait_for "$DATA/node-4.log" "Freshet is ready" 120

echo "== freshet partitions reassign --topic $TOPIC --partition 0 --replicas 4 --execute --wait"
START=$(date +%s.%N)
"$FRESHET" partitions reassign --topic "$TOPIC" --partition 0 --replicas 4 --execute --wait --bootstrap-server "$B" | tee "$DATA/reassign.out"
WALL=$(elapsed "$START")
SECONDS_TAKEN=$(grep -o 'completed in [0-9.]* s' "$DATA/reassign.out" | grep -o '[0-9.]*')
MOVED=$(cat "$DATA/node-4/$TOPIC-0/"*.log | wc -c)
[[ "$MOVED" -ge "$BYTES" ]] || { echo "node 4 holds $MOVED bytes of log, fewer than the $BYTES moved" >&2; exit 1; }
awk -v b="$BYTES" -v s="$SECONDS_TAKEN" -v w="$WALL" 'BEGIN {
  printf "reassigned %.2f GiB in %.1f s (%.0f MB/s); the command took %.1f s of wall time\n", b / 1073741824, s, b / 1e6 / s, w }'
