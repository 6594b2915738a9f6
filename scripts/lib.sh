# scripts/lib.sh - shell functions shared by scripts/quickstart,
# scripts/check and scripts/pg-test-cluster.  Sourced, never run; the
# callers use bash with `set -euo pipefail`.  Failures end the caller
# through die() with one line saying what to do.

# The Debian 12 packages, by what needs them.  scripts/quickstart
# installs BUILD and RUN; scripts/check installs BUILD, RUN and TEST
# (which holds PACKAGE); scripts/build-deb BUILD and PACKAGE.
# shellcheck disable=SC2034 # used by the callers
XMPPD_DEB_BUILD=(
	build-essential autoconf automake pkg-config
	libssl-dev libexpat1-dev libpq-dev libsodium-dev libidn11-dev
	libhttp-parser-dev
	libc-ares-dev
	libnats-dev
)
# shellcheck disable=SC2034
XMPPD_DEB_RUN=(
	postgresql openssl procps adduser libhttp-parser2.9
	libc-ares2 libnats3.4
)
# What scripts/build-deb and scripts/test-deb need besides BUILD: the
# packaging tools and the fresh Debian root of the package test.
# shellcheck disable=SC2034
XMPPD_DEB_PACKAGE=(
	debhelper dpkg-dev fakeroot git debootstrap
)
# shellcheck disable=SC2034
XMPPD_DEB_TEST=(
	libcriterion-dev
	clang libclang-rt-14-dev
	python3 python3-slixmpp python3-aioxmpp libstrophe-dev go-sendxmpp python3-cryptography
	python3-prometheus-client
	valgrind iproute2
	groff-base man-db
	"${XMPPD_DEB_PACKAGE[@]}"
	profanity tmux
	dnsmasq-base
	prosody lua-unbound ejabberd util-linux
	nats-server
)

# Prosody and ejabberd are there for the federation tests
# (tests/bb/fedlab.py), which run private instances as their users;
# lua-unbound lets Prosody use the test's DNS server.  Installing them
# may start the system services (on 5222/5269 of every address): stop
# them and keep them from starting again.  Root only; quiet.
stop_anchor_services() {
	is_root || return 0
	local s
	for s in prosody ejabberd; do
		[ -x "/etc/init.d/$s" ] || continue
		# nothing of it running: nothing to stop (ejabberd's stop
		# command would start an epmd daemon just to ask)
		pgrep -u "$s" >/dev/null 2>&1 || continue
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
			timeout 60 systemctl disable --now "$s" >/dev/null 2>&1 || true
		else
			timeout 60 "/etc/init.d/$s" stop >/dev/null 2>&1 || true
			update-rc.d "$s" disable >/dev/null 2>&1 || true
		fi
	done
}

say()  { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# The repository root (the parent of scripts/), as a physical path.
repo_root() {
	(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

# ---- Debian packages -------------------------------------------------

# Print the packages (arguments) that are not installed, one per line.
deps_missing() {
	local p
	for p in "$@"; do
		case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" in
		ii*) ;;
		*) printf '%s\n' "$p" ;;
		esac
	done
}

# ensure_deps PACKAGE...: make sure those Debian packages are installed:
# install them as root (without Recommends: nothing but what is named
# here and its dependencies), otherwise print the command and exit 1.
ensure_deps() {
	command -v dpkg-query >/dev/null 2>&1 ||
		die "dpkg-query not found: these scripts expect Debian 12"
	local missing
	missing=$(deps_missing "$@" | tr '\n' ' ')
	missing=${missing% }
	if [ -z "$missing" ]; then
		say "dependencies: all $# Debian packages are installed"
		return 0
	fi
	if ! is_root; then
		printf 'Missing Debian packages. Install them with:\n\n' >&2
		printf '  sudo apt-get install -y --no-install-recommends %s\n\n' "$missing" >&2
		printf '(run "sudo apt-get update" first if apt cannot find them), then run %s again.\n' "$0" >&2
		exit 1
	fi
	say "installing missing Debian packages: $missing"
	# shellcheck disable=SC2086 # one word per package
	DEBIAN_FRONTEND=noninteractive apt-get update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
			--no-install-recommends $missing ||
		die "apt-get install failed"
	missing=$(deps_missing "$@" | tr '\n' ' ')
	[ -z "$missing" ] || die "still missing after apt-get install: $missing"
}

# ---- Prometheus for the tests -----------------------------------------

# The cache of downloaded test tools: /var/cache/xmppd-test when we can
# write there (root; scripts/test-deb keeps its debootstrap tarball
# there too), otherwise ~/.cache/xmppd-test.
test_cache_dir() {
	local d=/var/cache/xmppd-test
	if mkdir -p "$d" 2>/dev/null && [ -w "$d" ]; then
		printf '%s\n' "$d"
	else
		d=${XDG_CACHE_HOME:-$HOME/.cache}/xmppd-test
		mkdir -p "$d" || die "cannot create the cache directory $d"
		printf '%s\n' "$d"
	fi
}

# prometheus_bindir: print the directory holding the prometheus and
# promtool binaries of Debian's prometheus package, unpacked (never
# installed: installing it would start a Prometheus daemon) under
# CACHE/prometheus/VERSION/ by apt-get download and dpkg-deb -x.  The
# candidate version apt knows is used, downloaded once; without apt's
# answer (offline, no apt-get update) the newest one unpacked before.
# Messages go to stderr: stdout is the directory only.
prometheus_bindir() {
	local cache version dir tmp deb
	cache=$(test_cache_dir)/prometheus
	mkdir -p "$cache" || die "cannot create $cache"
	version=$(apt-cache policy prometheus 2>/dev/null |
		awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }')
	if [ -z "$version" ] && is_root; then
		say "prometheus: not known to apt, running apt-get update" >&2
		DEBIAN_FRONTEND=noninteractive apt-get update >&2 || true
		version=$(apt-cache policy prometheus 2>/dev/null |
			awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }')
	fi
	if [ -n "$version" ]; then
		dir=$cache/${version//[^A-Za-z0-9.+~-]/_}
		if [ ! -x "$dir/usr/bin/promtool" ] || [ ! -x "$dir/usr/bin/prometheus" ]; then
			tmp=$(mktemp -d "$cache/download.XXXXXX")
			say "prometheus: apt-get download prometheus=$version (unpacked in $dir, not installed)" >&2
			if (cd "$tmp" && apt-get download "prometheus=$version" >&2) &&
				deb=$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1) &&
				[ -n "$deb" ] && dpkg-deb -x "$deb" "$tmp/root"; then
				rm -rf -- "$dir"
				mv "$tmp/root" "$dir"
			else
				warn "prometheus: apt-get download prometheus=$version failed"
			fi
			rm -rf -- "$tmp"
		fi
	fi
	if [ -z "$version" ] || [ ! -x "$dir/usr/bin/promtool" ]; then
		# offline: whatever was unpacked before
		dir=$(find "$cache" -mindepth 3 -maxdepth 3 -path '*/usr/bin' \
			-printf '%h\n' 2>/dev/null | sed 's,/usr$,,' | sort -V | tail -n 1)
		[ -n "$dir" ] ||
			die "no prometheus package: apt does not know it (apt-get update?) and nothing is cached in $cache"
		warn "prometheus: using the copy unpacked before in $dir"
	fi
	"$dir/usr/bin/promtool" --version >/dev/null 2>&1 ||
		die "$dir/usr/bin/promtool does not run"
	printf '%s\n' "$dir/usr/bin"
}

# ---- users and paths -------------------------------------------------

# Run a command as USER: directly when that is who we are, otherwise
# through runuser from "/" (so the caller's working directory need not
# be readable by USER).  Pass absolute paths only.
as_user() {
	local user=$1
	shift
	if [ "$user" = "$(id -un)" ]; then
		"$@"
	else
		(cd / && runuser -u "$user" -- "$@")
	fi
}

# Create the system user and group NAME unless they exist (root only).
ensure_system_user() {
	local name=$1
	if id -u "$name" >/dev/null 2>&1; then
		return 0
	fi
	say "creating system user $name"
	adduser --quiet --system --group --no-create-home \
		--home /nonexistent --shell /usr/sbin/nologin "$name" ||
		die "adduser $name failed"
}

# Fail with a clear message unless USER can reach directory DIR (search
# permission on every directory from / down to DIR).  Nothing is chmod-ed.
# A USER that does not exist yet (a system user created later, in no
# group) is judged by the "other" permission bits, so that this can run
# before anything is installed or created.
check_reachable() {
	local user=$1 dir=$2 path="" part ok
	local IFS=/
	for part in $dir; do
		[ -n "$part" ] || continue
		path="$path/$part"
		if id -u "$user" >/dev/null 2>&1; then
			as_user "$user" test -x "$path" 2>/dev/null && continue
		else
			ok=$(find "$path" -maxdepth 0 -perm -o+x 2>/dev/null)
			[ -z "$ok" ] || continue
		fi
		die "user '$user' cannot reach $dir: $path is $(stat -c '%A %U:%G' "$path").
  The PostgreSQL cluster and the server run as '$user' and need search (x)
  permission on every directory above the clone. Either clone to a place
  such as /srv or /opt (git clone ... /srv/xmppd), or allow it yourself:
  chmod o+x $path"
	done
}

# A TCP port on 127.0.0.1 that is free right now.
free_port() {
	local py port
	for py in /usr/bin/python3 python3; do
		if port=$("$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null); then
			printf '%s\n' "$port"
			return 0
		fi
	done
	local used
	used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://')
	for port in $(shuf -i 20000-60000 -n 50); do
		grep -qx "$port" <<<"$used" || { printf '%s\n' "$port"; return 0; }
	done
	die "no free TCP port found"
}

# ---- PostgreSQL ------------------------------------------------------

# The bin directory of the newest PostgreSQL under /usr/lib/postgresql.
pg_bindir() {
	local v
	v=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null |
		sort -V | tail -n 1)
	[ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] ||
		die "no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)"
	printf '/usr/lib/postgresql/%s/bin\n' "$v"
}

# pg_init DATADIR USER SETTING...: initdb DATADIR as USER (trust
# authentication: callers restrict who can reach the sockets) and append
# each SETTING ("key = value") to its postgresql.conf.  An existing
# cluster is kept as it is.
pg_init() {
	local datadir=$1 user=$2 bin
	shift 2
	if [ -f "$datadir/PG_VERSION" ]; then
		say "PostgreSQL: reusing the cluster in $datadir"
		return 0
	fi
	bin=$(pg_bindir)
	say "PostgreSQL: initdb $datadir (as $user)"
	as_user "$user" "$bin/initdb" -D "$datadir" --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 >/dev/null ||
		die "initdb $datadir failed"
	local s
	{
		printf '\n# added by xmppd scripts/lib.sh\n'
		for s in "$@"; do printf '%s\n' "$s"; done
	} >>"$datadir/postgresql.conf"
}

# pg_running DATADIR USER: is that cluster's postmaster alive?
pg_running() {
	as_user "$2" "$(pg_bindir)/pg_ctl" -D "$1" status >/dev/null 2>&1
}

# pg_start DATADIR LOGFILE USER [POSTGRES_OPTIONS]: start unless running.
pg_start() {
	local datadir=$1 logfile=$2 user=$3 opts=${4:-}
	if pg_running "$datadir" "$user"; then
		say "PostgreSQL: already running ($datadir)"
		return 0
	fi
	say "PostgreSQL: starting $datadir (log: $logfile)"
	if ! as_user "$user" "$(pg_bindir)/pg_ctl" -D "$datadir" -l "$logfile" \
		-o "$opts" -w -t 60 start >/dev/null; then
		tail -n 20 "$logfile" >&2 || true
		return 1
	fi
}

# pg_stop DATADIR USER: fast shutdown if running (immediate if that fails).
pg_stop() {
	local datadir=$1 user=$2 pg_ctl
	[ -f "$datadir/PG_VERSION" ] || return 0
	pg_running "$datadir" "$user" || return 0
	pg_ctl="$(pg_bindir)/pg_ctl"
	as_user "$user" "$pg_ctl" -D "$datadir" -m fast -w -t 30 stop >/dev/null ||
		as_user "$user" "$pg_ctl" -D "$datadir" -m immediate -w -t 30 stop >/dev/null
}

# pg_createdb HOST PORT USER DBNAME: create the database unless it exists
# (HOST is a socket directory or an address).
pg_createdb() {
	local host=$1 port=$2 user=$3 db=$4 bin found
	bin=$(pg_bindir)
	found=$(as_user "$user" "$bin/psql" -X -h "$host" -p "$port" -U "$user" \
		-d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'") ||
		die "cannot connect to PostgreSQL at $host port $port"
	[ "$found" = 1 ] && return 0
	say "PostgreSQL: creating database $db"
	as_user "$user" "$bin/createdb" -h "$host" -p "$port" -U "$user" "$db" ||
		die "createdb $db failed"
}

# The user a throwaway test cluster runs as: postgres when root (initdb
# refuses root), otherwise ourselves.
pg_tmp_user() {
	if is_root; then
		id -u postgres >/dev/null 2>&1 ||
			die "user postgres does not exist (apt-get install postgresql creates it)"
		echo postgres
	else
		id -un
	fi
}

# pg_tmp_start DIR DBNAME: a throwaway cluster in the empty directory DIR
# (from mktemp -d), listening on 127.0.0.1 only, trust authentication,
# tuned for tests (no fsync).  Sets PG_TMP_PORT and PG_TMP_USER.
pg_tmp_start() {
	local dir=$1 db=$2 try
	PG_TMP_USER=$(pg_tmp_user)
	chmod 0700 "$dir"
	[ "$PG_TMP_USER" = "$(id -un)" ] || chown "$PG_TMP_USER:" "$dir"
	check_reachable "$PG_TMP_USER" "$dir"
	pg_init "$dir/data" "$PG_TMP_USER" \
		"listen_addresses = '127.0.0.1'" \
		"unix_socket_directories = '$dir'" \
		"fsync = off" "synchronous_commit = off" "full_page_writes = off" \
		"max_connections = 200"
	# The port is chosen free, but could be taken before the postmaster
	# binds it: try a few.
	for try in 1 2 3 4 5; do
		PG_TMP_PORT=$(free_port)
		pg_start "$dir/data" "$dir/log" "$PG_TMP_USER" "-p $PG_TMP_PORT" &&
			break
		[ "$try" -lt 5 ] || die "PostgreSQL did not start (log: $dir/log)"
		warn "PostgreSQL did not start on port $PG_TMP_PORT, trying another"
	done
	pg_createdb 127.0.0.1 "$PG_TMP_PORT" "$PG_TMP_USER" "$db"
}

# pg_tmp_destroy DIR: stop the throwaway cluster in DIR and remove DIR.
# Safe to call more than once, and on a half-made DIR.
pg_tmp_destroy() {
	local dir=$1 user
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	user=${PG_TMP_USER:-$(stat -c %U "$dir")}
	pg_stop "$dir/data" "$user" ||
		warn "pg_ctl stop failed for $dir/data"
	rm -rf -- "$dir"
}
