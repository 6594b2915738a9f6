#!/bin/sh
# fuzz/build.sh - build the libFuzzer harnesses with clang, apart from
# the normal (gcc) build.
#
#   fuzz/build.sh [OUTDIR]          default OUTDIR: build-fuzz/ at the top
#
# Each fuzz/fuzz_<target>.c becomes OUTDIR/fuzz_<target>, linked with
# -fsanitize=fuzzer,address,undefined; the xmppd sources it tests are
# compiled with -fsanitize=fuzzer-no-link (coverage, no main) into
# OUTDIR/obj/.  Only what changed is rebuilt.  CC (default clang) must be
# a clang with libFuzzer: on Debian 12, packages clang and
# libclang-rt-14-dev.  Exits non-zero on any failure.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd -P)
out=${1:-$top/build-fuzz}
CC=${CC:-clang}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd -P)

command -v "$CC" >/dev/null 2>&1 ||
	{ echo "fuzz/build.sh: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

PKGS="openssl expat libpq libsodium libidn"
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
# libhttp-parser ships no .pc file (Debian libhttp-parser-dev)
PKG_LIBS="$(pkg-config --libs $PKGS) -lhttp_parser"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
WARN="-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral"
CFLAGS_ALL="-std=gnu11 -g -O1 -D_GNU_SOURCE $WARN $SAN -I$top -I$top/lib -I$top/shm -I$top/fuzz $PKG_CFLAGS ${FUZZ_CFLAGS:-}"

# The xmppd sources the harnesses use (lib/ and shm/ as in libxmppd.a,
# and the worker files that run without sockets).
LIB_SRCS="lib/log.c lib/util.c lib/arena.c lib/buf.c lib/config.c
	lib/base64.c lib/scram.c lib/hmac.c lib/jid.c lib/cidr.c lib/compcfg.c
	lib/hostport.c lib/secret.c cluster/dirwire.c cluster/relay.c
	cluster/fence.c
	cluster/directory.c cluster/members.c
	shm/frame.c shm/queue.c shm/metrics.c shm/shm.c shm/session.c
	shm/addr.c shm/throttle.c shm/smstore.c shm/smwire.c shm/caps.c
	shm/cluster.c cluster/hb.c cluster/table.c"
# Per target: worker sources and fuzz/ helpers beside fuzz_<target>.c.
srcs_for() {
	case $1 in
	xml) echo "worker/stream.c worker/xml.c worker/store.c fuzz/xmlcheck.c fuzz/stubs.c" ;;
	stored) echo "worker/store.c worker/xml.c fuzz/xmlcheck.c fuzz/stubs.c" ;;
	tls13) echo "worker/tls13.c fuzz/stubs.c" ;;
	http) echo "worker/http.c worker/metrics.c" ;;
	dialback) echo "worker/dialback.c worker/xml.c" ;;
	mam) echo "worker/mam_form.c worker/xml.c" ;;
	pubsub) echo "worker/pubsub.c worker/pubsub_form.c worker/xml.c" ;;
	certid) echo "lib/certid.c" ;;
	caps) echo "worker/caps.c worker/xml.c" ;;
	pep_compat) echo "worker/pep_compat_form.c worker/xml.c" ;;
	muc_config) echo "worker/muc_form.c worker/xml.c" ;;
	muc_fanout) echo "worker/muc_fan.c" ;;
	pep_event) echo "worker/pep_wire.c" ;;
	s2s) echo "worker/s2s.c worker/s2s_in.c worker/component.c worker/stream.c
		worker/stanza.c worker/dialback.c worker/xml.c worker/store.c
		lib/certid.c fuzz/xmlcheck.c fuzz/stubs.c" ;;
	*) echo "" ;;
	esac
}

# compile SRC (relative to top) with EXTRA flags into OBJ unless up to
# date (the object is newer than the source and every header we have).
newest_header=$(ls -t "$top"/lib/*.h "$top"/shm/*.h "$top"/worker/*.h \
	"$top"/cluster/*.h \
	"$top"/fuzz/*.h | head -n 1)
compile() {
	src=$1 obj=$2 extra=$3
	if [ -f "$obj" ] && [ "$obj" -nt "$top/$src" ] && [ "$obj" -nt "$newest_header" ] &&
	   [ "$obj" -nt "$top/fuzz/build.sh" ]; then
		return 0
	fi
	echo "  CC       $src"
	# shellcheck disable=SC2086 # flag lists
	$CC $CFLAGS_ALL $extra -c "$top/$src" -o "$obj"
}

objs=""
for s in $LIB_SRCS fuzz/common.c; do
	o="$out/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')"
	compile "$s" "$o" "-fsanitize=fuzzer-no-link"
	objs="$objs $o"
done
rm -f "$out/obj/libfuzzxmppd.a"
# shellcheck disable=SC2086
ar cr "$out/obj/libfuzzxmppd.a" $objs

targets=${FUZZ_TARGETS:-$(cd "$top/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
for t in $targets; do
	tobjs=""
	for s in fuzz/fuzz_$t.c $(srcs_for "$t"); do
		o="$out/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')"
		compile "$s" "$o" "-fsanitize=fuzzer-no-link"
		tobjs="$tobjs $o"
	done
	echo "  LD       fuzz_$t"
	# shellcheck disable=SC2086
	$CC $SAN -fsanitize=fuzzer -o "$out/fuzz_$t" $tobjs \
		"$out/obj/libfuzzxmppd.a" $PKG_LIBS -lpthread
done
