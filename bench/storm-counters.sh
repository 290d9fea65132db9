#!/usr/bin/env bash
# Benchmark (not a test): a storm of STORM_COUNTER_ADDS (default 10,000) mails from one
# sender to one route, counted by the storm counters' adapter (src/aws/counters.rs)
# against DynamoDB's API (moto over HTTP), one add at a time (moto does not serialise
# concurrent updates of one item as DynamoDB does: it can't show contention). It runs the check of tests/storm_counters.rs at that size: every add must
# answer a distinct count 1..N (no lost and no double counts, so no two invocations can
# both believe they are under the bound), and the route's count must end at N. Prints
# the time and the rate on moto (DynamoDB itself takes far more on one item).
#
#   bench/storm-counters.sh                        10,000 adds
#   STORM_COUNTER_ADDS=50000 bench/storm-counters.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export STORM_COUNTER_ADDS=${STORM_COUNTER_ADDS:-10000}
cargo test --quiet --test storm_counters -- --nocapture 2>&1 | grep -E "adds, |test result|panicked|assert"
