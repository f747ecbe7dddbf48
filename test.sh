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

passed=0; failed=0; skipped=0; status=0
# A test that runs longer than this is taken as hung: the test host is dumped (a mini dump under
# TestResults/) and killed, and the project counts as failed instead of stalling CI.
HANG_TIMEOUT=${FRESHET_TEST_HANG_TIMEOUT:-10min}
[[ $FULL -eq 1 ]] && HANG_TIMEOUT=${FRESHET_TEST_HANG_TIMEOUT:-60min}
for proj in tests/*/*.csproj; do
  log=$(mktemp)
  args=(test "$proj" --no-build -nologo --blame-hang-timeout "$HANG_TIMEOUT" --blame-hang-dump-type mini
        --results-directory "TestResults/$(basename "$proj" .csproj)")
  if [[ -n "$FILTER" ]]; then
    if [[ $FULL -eq 1 ]]; then args+=(--filter "$FILTER"); else args+=(--filter "($FILTER)&Category!=Soak"); fi
  elif [[ $FULL -eq 0 ]]; then
    args+=(--filter "Category!=Soak")
  fi
  dotnet "${args[@]}" 2>&1 | tee "$log" | grep -vE '^\s*(Passed |Determining|Restored|A total of|Test run for|Starting test execution|Build started|\[xUnit|Data collector .Blame. message: All tests finished|$)'
  rc=${PIPESTATUS[0]} # dotnet test's own exit code (no `|| true` here: it would reset PIPESTATUS)
  # "Passed!  - Failed: 0, Passed: 12, Skipped: 0, Total: 12" (or "Failed!", "Skipped!")
  line=$(grep -E '(Passed|Failed|Skipped)!\s+- Failed:' "$log" | tail -1)
  if [[ -z "$line" ]]; then
    if [[ $rc -eq 0 ]] && grep -q "No test matches the given testcase filter" "$log"; then rm -f "$log"; continue; fi
    echo "no test summary for $proj (exit code $rc: build or test host failure)"; failed=$((failed + 1)); status=1
  else
    f=$(sed -E 's/.*Failed:\s+([0-9]+).*/\1/' <<<"$line")
    p=$(sed -E 's/.*Passed:\s+([0-9]+).*/\1/' <<<"$line")
    k=$(sed -E 's/.*Skipped:\s+([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
    [[ "$f" -ne 0 ]] && status=1
    # A test host that crashed or was killed (hang timeout) can still print a summary of what ran:
    # any non-zero exit is a failure of its own.
    if [[ $rc -ne 0 && "$f" -eq 0 ]]; then
      echo "dotnet test $proj exited with code $rc although its summary shows no failed test (test host crash or hang; see TestResults/)"
      failed=$((failed + 1)); status=1
    fi
  fi
  rm -f "$log"
done
# ---- the committed generated code matches the schemas. Kafka's schemas stay outside the repository
# (../shared); without them the check cannot run, which is said, and is a failure where they are
# required (FRESHET_REQUIRE_SCHEMAS=1, set by .ci/run).
if [[ -n "$FILTER" ]]; then
  echo "generated-code check: not run (--filter given)"
elif [[ -d ../shared/kafka-protocol && -d ../shared/kafka-metadata && -d ../shared/kafka-coordinator-records ]]; then
  if dotnet run --no-build --project tools/Freshet.ProtocolGen -- --check; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
elif [[ "${FRESHET_REQUIRE_SCHEMAS:-0}" == 1 ]]; then
  echo "generated-code check: FAILED to run: Kafka's schemas are not at ../shared/kafka-{protocol,metadata,coordinator-records}"
  failed=$((failed + 1)); status=1
else
  echo "generated-code check: SKIPPED: Kafka's schemas are not at ../shared/kafka-{protocol,metadata,coordinator-records}"
fi
[[ $skipped -gt 0 ]] && echo "skipped: $skipped (listed above as Skipped; each one's reason is its Skip text in the code)"
echo "tests: $passed passed, $failed failed"
exit $status
