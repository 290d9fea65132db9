# Sourced by the bench scripts that post to a real RT: which one, and its cleanup.
#
#   bench_rt_up PORT    sets rt_url: BENCH_RT_URL when set (a running test RT), else a
#                       fresh test RT (scripts/rt-test-server) on RT_TEST_PORT, by
#                       default PORT, which bench_rt_down then stops
#   bench_rt_down       stops the RT bench_rt_up started, if it started one
started_rt=false
bench_rt_up() {
  rt_url=${BENCH_RT_URL:-}
  [ -n "$rt_url" ] && return 0
  export RT_TEST_PORT=${RT_TEST_PORT:-$1}
  echo "starting a fresh test RT on port $RT_TEST_PORT..." >&2
  started_rt=true
  rt_url=$(scripts/rt-test-server start)
}
bench_rt_down() {
  if $started_rt; then scripts/rt-test-server stop; fi
}
