#!/usr/bin/env bash
# Runs Freshet's test suite. On a fresh machine it first installs what the tests need:
# kcat, kafka-python and confluent-kafka-python (Debian packages) and the npm modules of tests/clients (kafkajs).
#
#   ./test.sh            fast suite (default; about 10 minutes on 2 cores)
#   ./test.sh --full     also the long soaks (tests with [Trait("Category", "Soak")]; FRESHET_SOAK_ROUNDS sets their length)
#   ./test.sh --filter X passes a dotnet test filter (e.g. --filter FullyQualifiedName~Storage)
#
# Ends with one line: "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"

FILTER=""
FULL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --full) FULL=1; shift ;;
    --filter) FILTER="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done

# ---- what the tests need
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
/usr/bin/python3 -c 'import kafka' >/dev/null 2>&1 || need+=(python3-kafka)
# Debian's confluent-kafka 1.7 on Debian's librdkafka 2.0.2 (older than the one Confluent.Kafka bundles)
/usr/bin/python3 -c 'import confluent_kafka' >/dev/null 2>&1 || need+=(python3-confluent-kafka)
# kafka-python's optional codecs (the package itself brings only gzip)
/usr/bin/python3 -c 'import snappy' >/dev/null 2>&1 || need+=(python3-snappy)
/usr/bin/python3 -c 'import lz4' >/dev/null 2>&1 || need+=(python3-lz4)
/usr/bin/python3 -c 'import zstandard' >/dev/null 2>&1 || need+=(python3-zstandard)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq || true
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
if [[ -f tests/clients/package.json ]] && command -v npm >/dev/null 2>&1; then
  if [[ ! -d tests/clients/node_modules ]]; then
    echo "installing npm modules for tests/clients"
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error) || (cd tests/clients && npm install --no-audit --no-fund --loglevel=error)
  fi
fi

# ---- build once, then run every test project
dotnet build Freshet.slnx -c Debug -v quiet -nologo || { echo "tests: 0 passed, 1 failed"; exit 1; }

passed=0; failed=0; status=0
for proj in tests/*/*.csproj; do
  log=$(mktemp)
  args=(test "$proj" --no-build -nologo)
  if [[ -n "$FILTER" ]]; then
    if [[ $FULL -eq 1 ]]; then args+=(--filter "$FILTER"); else args+=(--filter "($FILTER)&Category!=Soak"); fi
  elif [[ $FULL -eq 0 ]]; then
    args+=(--filter "Category!=Soak")
  fi
  dotnet "${args[@]}" 2>&1 | tee "$log" | grep -vE '^\s*(Passed |Determining|Restored|A total of|Test run for|Starting test execution|Build started|\[xUnit)' || true
  # "Passed!  - Failed: 0, Passed: 12, Skipped: 0, Total: 12" (or "Failed!  - ...")
  line=$(grep -E '(Passed|Failed)!\s+- Failed:' "$log" | tail -1)
  if [[ -z "$line" ]]; then
    if grep -q "No test matches the given testcase filter" "$log"; then rm -f "$log"; continue; fi
    echo "no test summary for $proj (build or host failure)"; failed=$((failed + 1)); status=1
  else
    f=$(sed -E 's/.*Failed:\s+([0-9]+).*/\1/' <<<"$line")
    p=$(sed -E 's/.*Passed:\s+([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + p)); failed=$((failed + f))
    [[ "$f" -ne 0 ]] && status=1
  fi
  rm -f "$log"
done
# ---- the committed generated code matches the schemas (when they are beside the repo, as in ../shared)
if [[ -z "$FILTER" && -d ../shared/kafka-protocol ]]; then
  if dotnet run --no-build --project tools/Freshet.ProtocolGen -- --check; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
fi
echo "tests: $passed passed, $failed failed"
exit $status
