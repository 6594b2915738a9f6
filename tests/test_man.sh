#!/bin/sh
# test_man.sh - the manual pages as a reader gets them: each built page
# (docs/man/*.in with make's paths) renders without a single groff or
# man warning; xmppd.conf(5) has an entry for every setting of the table
# (the keys of `xmppd --example`); xmppd(8) has every option of
# `xmppd --help` and xmppctl(8) every command of `xmppctl help`.
# (check-local compares docs/man/xmppd.conf.5.in with `xmppd --man`.)
set -u
B=${XMPPD_BUILDDIR:-.}
MAN="$B/docs/man"
failed=0
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
# "ok - what" unless something failed since the last ok.
mark=0
ok() { [ "$failed" -ne "$mark" ] || echo "ok - $*"; mark=$failed; }

command -v groff >/dev/null || { echo "groff not installed (groff-base)"; exit 1; }

# ---- no warnings ----------------------------------------------------
for page in "$MAN/xmppd.8" "$MAN/xmppctl.8" "$MAN/xmppd.conf.5"; do
	[ -s "$page" ] || { fail "$page not built"; continue; }
	out=$(groff -man -ww -z -Tutf8 "$page" 2>&1)
	[ -z "$out" ] || fail "groff warnings in $page: $out"
	if command -v man >/dev/null; then
		out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
		[ -z "$out" ] || fail "man warnings in $page: $out"
	fi
	if grep -n '@[A-Za-z]*@' "$page"; then
		fail "$page: unsubstituted @...@"
	fi
	ok "$(basename "$page") renders without warnings"
done

# Plain text as a reader sees it (ASCII, no overstriking), from the
# section header $2 to the next one, $3.
render() {
	groff -man -Tascii -P-cbou "$1" 2>/dev/null | sed -n "/^$2\$/,/^$3\$/p"
}

# An entry tag is a line indented 7 columns (.TP), e.g.
# "       status, workers" or "       c2s.port = number".
has_tag() {  # TEXT WORDS
	printf '%s\n' "$1" | grep -qE "^       ([^ ].*, )?$2( |,|\$)"
}

# ---- xmppd.conf(5): every key -----------------------------------------
text=$(render "$MAN/xmppd.conf.5" SETTINGS FILES)
keys=$("$B/xmppd" --example | awk '
	/^[a-z0-9_.-]+ \{/ { block = $1 "."; next }
	/^\}/ { block = ""; next }
	/^[ \t]*#[a-z0-9_.-]+ = / { k = $1; sub(/^[ \t]*#/, "", k); print block k }')
n=0
for k in $keys; do
	n=$((n + 1))
	has_tag "$text" "$(printf '%s' "$k" | sed 's/\./\\./g') = [a-z]+" ||
		fail "xmppd.conf(5) has no entry for $k"
done
[ "$n" -gt 20 ] || fail "only $n keys found in xmppd --example"
entries=$(printf '%s\n' "$text" | grep -cE '^       [a-z0-9_.-]+ = [a-z]+$')
[ "$entries" -eq "$n" ] || fail "xmppd.conf(5) has $entries entries for $n settings"
ok "xmppd.conf(5) has an entry for each of the $n settings"

# ---- xmppd(8): every option ---------------------------------------------
text=$(render "$MAN/xmppd.8" OPTIONS SIGNALS)
opts=$("$B/xmppd" --help | grep -oE '(^|[ |\[])--?[a-z]+' | sed 's/^[ |[]//' | sort -u)
[ -n "$opts" ] || fail "no options in xmppd --help"
for o in $opts; do
	has_tag "$text" "$o" || fail "xmppd(8) does not describe $o"
done
ok "xmppd(8) describes every option of xmppd --help: $(printf "%s\n" "$opts" | paste -sd" " -)"

# ---- xmppctl(8): every command ------------------------------------------
text=$(render "$MAN/xmppctl.8" COMMANDS "EXIT STATUS")
cmds=$("$B/xmppctl" help | awk '
	/^  [a-z]/ {
		sub(/^  /, ""); split($0, f, /  +/); n = split(f[1], w, " ");
		c = w[1]; if (n > 1 && w[2] ~ /^[a-z]+$/) c = c " " w[2]; print c }')
[ -n "$cmds" ] || fail "no commands in xmppctl help"
nl='
'
oldifs=$IFS
IFS=$nl
for c in $cmds; do
	has_tag "$text" "$c" || fail "xmppctl(8) does not describe '$c'"
done
IFS=$oldifs
ok "xmppctl(8) describes every command of xmppctl help: $(printf '%s\n' "$cmds" | paste -sd, -)"

# ---- xmppd(8): every environment variable it reads ---------------------
S=$(cd "$(dirname "$0")/.." && pwd)
text=$(render "$MAN/xmppd.8" ENVIRONMENT "SEE ALSO")
vars=$(cat "$S"/master/*.c "$S"/worker/*.c "$S"/shm/*.c "$S"/lib/*.c |
	grep -oE 'getenv\("[A-Z_]+"\)' | sed 's/getenv("//; s/")//' | sort -u)
[ -n "$vars" ] || fail "no getenv() found in $S/master"
for v in $vars; do
	has_tag "$text" "$v" || fail "xmppd(8) ENVIRONMENT does not describe $v"
done
ok "xmppd(8) describes every variable xmppd reads: $(printf '%s\n' "$vars" | paste -sd" " -)"

[ "$failed" -eq 0 ]
