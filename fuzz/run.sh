#!/bin/sh
# fuzz/run.sh - build the fuzzers (fuzz/build.sh) and run each for a
# bounded time from its committed seeds.
#
#   fuzz/run.sh [-t SECONDS] [-o OUTDIR] [TARGET...] [-- LIBFUZZER_ARGS...]
#
# SECONDS per target (default $FUZZ_TIME, else 20); OUTDIR (default
# build-fuzz/ at the top) holds the binaries, the growing corpus of each
# target (OUTDIR/corpus/<target>/, never the source tree) and what a
# crash leaves (OUTDIR/crashes/<target>-crash-*).  The committed seeds
# in fuzz/corpus/<target>/ and fuzz/regress/<target>/ are read, not
# written.  Without TARGETs every fuzz/fuzz_*.c runs.  Ends with one
# line "fuzz: N passed, N failed"; exits 1 if any target crashed,
# leaked, timed out or broke a property, 2 if the build failed.
set -u

top=$(cd "$(dirname "$0")/.." && pwd -P)
time=${FUZZ_TIME:-20}
out=$top/build-fuzz
while getopts t:o: opt; do
	case $opt in
	t) time=$OPTARG ;;
	o) out=$OPTARG ;;
	*) echo "usage: fuzz/run.sh [-t SECONDS] [-o OUTDIR] [TARGET...] [-- ARGS...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
targets=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	targets="$targets $1"
	shift
done
[ "${1:-}" = "--" ] && shift
[ -n "$targets" ] ||
	targets=$(cd "$top/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//' | tr '\n' ' ')

echo "==> fuzz: building ($out)"
FUZZ_TARGETS="$targets" "$top/fuzz/build.sh" "$out" || { echo "error: fuzz/build.sh failed" >&2; exit 2; }

passed=0 failed=0 failed_names=""
mkdir -p "$out/crashes"
for t in $targets; do
	mkdir -p "$out/corpus/$t"
	dict=""
	[ -f "$top/fuzz/$t.dict" ] && dict="-dict=$top/fuzz/$t.dict"
	[ -z "$dict" ] && [ "$t" = stored ] && dict="-dict=$top/fuzz/xml.dict"
	[ -z "$dict" ] && [ "$t" = mam ] && dict="-dict=$top/fuzz/xml.dict"
	[ -z "$dict" ] && [ "$t" = pubsub ] && dict="-dict=$top/fuzz/xml.dict"
	[ -z "$dict" ] && [ "$t" = pep_compat ] && dict="-dict=$top/fuzz/xml.dict"
	[ -z "$dict" ] && [ "$t" = caps ] && dict="-dict=$top/fuzz/xml.dict"
	[ -z "$dict" ] && [ "$t" = muc_config ] && dict="-dict=$top/fuzz/xml.dict"
	regress=""
	[ -d "$top/fuzz/regress/$t" ] && regress="$top/fuzz/regress/$t"
	echo "==> fuzz: $t for ${time}s (log: $out/$t.log)"
	# -timeout: one input running 10 s is a finding (a hang); leaks
	# count (ASan's LeakSanitizer) as they do in make check.
	# shellcheck disable=SC2086 # optional arguments
	if "$out/fuzz_$t" -max_total_time="$time" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 $dict \
		-artifact_prefix="$out/crashes/$t-" "$@" \
		"$out/corpus/$t" "$top/fuzz/corpus/$t" $regress \
		>"$out/$t.log" 2>&1; then
		passed=$((passed + 1))
		grep -a '^stat::number_of_executed_units' "$out/$t.log" |
			sed "s/^stat::number_of_executed_units: */    runs: /"
	else
		failed=$((failed + 1))
		failed_names="$failed_names $t"
		echo "==> fuzz: $t FAILED; the end of $out/$t.log:" >&2
		grep -a -v '^#[0-9]' "$out/$t.log" | tail -n 40 >&2
		ls "$out/crashes/$t-"* 2>/dev/null | sed 's/^/    input: /' >&2
	fi
done
[ "$failed" -eq 0 ] ||
	echo "==> fuzz: failed:$failed_names (reproduce: $out/fuzz_<target> <input>; see docs/FUZZING.md)" >&2
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
