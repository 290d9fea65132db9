#!/usr/bin/env bash
# Benchmark (not a test): a storm of STORM_COUNTER_ADDS (default 10,000) mails from one
# sender to one route, STORM_COUNTER_AT_ONCE (default 64) at once as concurrent
# invocations send them, counted by the storm counters' adapter (src/aws/counters.rs)
# against DynamoDB's API: moto behind tests/support/dynamodb_front.py, which applies the
# writes to one item one at a time as DynamoDB does and answers STORM_COUNTER_THROTTLED
# (default 0.05) of them as a throttled hot item, never applied, for the SDK to retry.
# It runs the check of tests/storm_counters.rs at that size: every answered add must
# answer a distinct count 1..N, for the sender and the route (no lost and no double
# counts, so no two invocations can both believe they are under the bound), and the
# item must end at N. Prints the time, the rate, the throttled writes and the adds that
# stayed throttled through every retry (the function fails open on those and logs them).
#
#   bench/storm-counters.sh                        10,000 adds, 64 at once, 5% throttled
#   STORM_COUNTER_ADDS=50000 STORM_COUNTER_THROTTLED=0.2 bench/storm-counters.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export STORM_COUNTER_ADDS=${STORM_COUNTER_ADDS:-10000}
export STORM_COUNTER_AT_ONCE=${STORM_COUNTER_AT_ONCE:-64}
export STORM_COUNTER_THROTTLED=${STORM_COUNTER_THROTTLED:-0.05}
cargo test --quiet --test storm_counters -- --nocapture 2>&1 | grep -E "adds, |test result|panicked|assert"
