#!/usr/bin/env bash
# Peers benchmark (`make bench`): Postern side by side with nginx, HAProxy,
# Caddy and Traefik, each configured the same way (see the *.tmpl files
# here): one virtual host, prefix /, round robin over three backends with
# upstream keep-alive, no access log, one worker / one thread /
# GOMAXPROCS=1, TLS with one ECDSA P-256 certificate, HTTP/2 on TLS.
#
# Two more peers are Postern set up as the `postern` peer, with one
# difference each:
#
#	postern-limit  the route carries postern.dev/max-body-size: 8m, so that
#	               a body limit's cost per request shows next to a plain route
#	postern-nginx  the route carries ingress-nginx's rewrite-target (a prefix
#	               added with a variable: a regex host), enable-cors
#	               (every origin: six fields on each response), affinity: cookie
#	               (wrk sends no cookie back: each request starts a session and
#	               gets a Set-Cookie, the costly case) and a canary Ingress by
#	               header and weight 10 (postern-canary.yaml.tmpl): the
#	               migrated ingress-nginx route, beside a plain one
#	postern-basic  the route carries ingress-nginx's basic auth (auth-type:
#	               basic, a bcrypt user in a Secret, postern-users.yaml.tmpl)
#	               and every request sends that user's credentials: a
#	               logged-in client, whose check Postern remembers
#	postern-authurl  the route carries ingress-nginx's auth-url, the first
#	               backend (any path answers 200) as the auth service: one
#	               auth request on loopback before each request
#	postern-base   bin/postern built at POSTERN_BASELINE=<git rev> (cached as
#	               bin/postern-base-<commit>): the same run before and after
#	               a change
#
# Servers (proxies and backends) run on one CPU, the load generator and
# this script on the other. For each repeat, each scenario, each peer in
# turn (so that noise on the machine spreads over all of them):
#
#	http1      HTTP/1.1 keep-alive                       wrk
#	https1     HTTP/1.1 over TLS, keep-alive             wrk
#	h2         HTTP/2 over TLS, streams multiplexed      h2load -m
#	handshake  a new TLS connection per request          wrk, "Connection: close"
#
# It prints one Markdown table (medians over the repeats) and keeps the raw
# outputs under bin/bench-results/<timestamp>/. Settings, from the
# environment:
#
#	DURATION=10s  REPEATS=3   each run's length, and runs per peer and scenario
#	QUICK=1       2 s runs, 1 repeat, no warm-up: for development
#	PEERS="nginx haproxy caddy traefik postern postern-limit postern-nginx
#	              postern-basic postern-authurl", and
#	              postern-base when POSTERN_BASELINE is set
#	POSTERN_BASELINE=<git rev>   build that revision for postern-base
#	SCENARIOS="http1 https1 h2 handshake"
#	CONNECTIONS=50 H2_STREAMS=10   client connections; HTTP/2 streams per connection
#	WARMUP=1s     unmeasured load on each peer and scenario before the repeats
#	SERVER_CPU=0 LOAD_CPU=1   CPUs for the servers and for the load generator
#	CADDY_VERSION TRAEFIK_VERSION   Go module versions built into ~/.cache/postern/bench
#
# Every process it starts is stopped by its PID when it ends; every run is
# bounded in time. Load goes only to 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root="$PWD"
here="$root/test/bench/peers"

if [[ "${QUICK:-0}" == 1 ]]; then
	DURATION="${DURATION:-2s}" REPEATS="${REPEATS:-1}" WARMUP="${WARMUP:-0s}"
fi
DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
WARMUP="${WARMUP:-1s}"
CONNECTIONS="${CONNECTIONS:-50}"
H2_STREAMS="${H2_STREAMS:-10}"
POSTERN_BASELINE="${POSTERN_BASELINE:-}"
default_peers="nginx haproxy caddy traefik postern postern-limit postern-nginx postern-basic postern-authurl"
[[ -n "$POSTERN_BASELINE" ]] && default_peers+=" postern-base"
PEERS="${PEERS:-$default_peers}"
SCENARIOS="${SCENARIOS:-http1 https1 h2 handshake}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
CACHE="${CACHE:-$HOME/.cache/postern/bench}"
CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
BASE_PORT="${BASE_PORT:-18000}"
RESULTS="${RESULTS:-bin/bench-results/$(date +%Y%m%d-%H%M%S)}"

HOST=bench.example.com
BACKEND_PORT=17000
BACKEND_IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
ALL_PEERS=(nginx haproxy caddy traefik postern postern-limit postern-base postern-nginx postern-basic postern-authurl) # also fixes each peer's ports: append new ones

# extra_annotation is the annotation lines a Postern peer's Ingress
# carries beyond postern.yaml.tmpl's (lines joined by "\n    ").
nginx_annotations='nginx.ingress.kubernetes.io/ssl-redirect: "false"'
for a in 'rewrite-target: /bench$request_uri' 'enable-cors: "true"' 'affinity: cookie' 'session-cookie-path: /'; do
	nginx_annotations+="\\n    nginx.ingress.kubernetes.io/$a"
done
declare -A extra_annotation=([postern-limit]="postern.dev/max-body-size: 8m" [postern-nginx]="$nginx_annotations"
	[postern-basic]='nginx.ingress.kubernetes.io/auth-type: basic\n    nginx.ingress.kubernetes.io/auth-secret: bench-users'
	[postern-authurl]="nginx.ingress.kubernetes.io/auth-url: http://${BACKEND_IPS[0]}:$BACKEND_PORT/auth")
# peer_header is a header field every request to the peer carries (the
# load generators' and the checks'): postern-basic's credentials.
declare -A peer_header=([postern-basic]="Authorization: Basic $(printf bench:bench | base64)")

say() { printf '%s\n' "$*"; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

# seconds turns "10s" or "10" into 10.
seconds() {
	local v="${1%s}"
	[[ "$v" =~ ^[0-9]+$ ]] || die "want a whole number of seconds, got '$1'"
	echo "$v"
}
dur="$(seconds "$DURATION")"
warmup="$(seconds "$WARMUP")"
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive number, got '$REPEATS'"
((dur > 0)) || die "DURATION must be at least 1s"
for s in $SCENARIOS; do
	case "$s" in http1 | https1 | h2 | handshake) ;; *) die "unknown scenario '$s' (want http1 https1 h2 handshake)" ;; esac
done
for p in $PEERS; do
	case " ${ALL_PEERS[*]} " in *" $p "*) ;; *) die "unknown peer '$p' (want ${ALL_PEERS[*]})" ;; esac
	[[ "$p" != postern-base || -n "$POSTERN_BASELINE" ]] ||
		die "peer postern-base needs POSTERN_BASELINE=<git rev>, the revision to build and measure"
done
if [[ " $PEERS " == *" postern-base "* ]]; then
	base_commit="$(git rev-parse --verify --quiet "$POSTERN_BASELINE^{commit}")" ||
		die "POSTERN_BASELINE=$POSTERN_BASELINE is not a commit of this repository"
fi

# --- processes -------------------------------------------------------------

pids=()    # every process started, stopped by PID on exit
tmpdirs=() # every temporary directory made, removed on exit

# stop ends one process we started: SIGTERM, then SIGKILL after 5 s.
stop() {
	local pid="$1" i state
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		state="$(proc_state "$pid")"
		[[ -z "$state" || "$state" == Z ]] && break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}

# forget drops PID from the processes to stop on exit, once it has ended, so
# that a PID reused later by somebody else's process is never signalled.
forget() {
	local keep=() p
	for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop "$pid"; done
	((${#tmpdirs[@]} == 0)) || rm -rf "${tmpdirs[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# proc_fields prints the fields of /proc/PID/stat after the command name
# (field 3, the state, first), or nothing when the process is gone.
proc_fields() {
	local s
	{ read -r s <"/proc/$1/stat"; } 2>/dev/null || return 0
	echo "${s##*) }"
}

proc_state() {
	local f
	f="$(proc_fields "$1")"
	echo "${f%% *}"
}

# tree prints PID and all its descendants (nginx's worker is a child of its
# master).
tree() {
	local -A parent=()
	local f s pid rest
	for f in /proc/[0-9]*/stat; do
		{ read -r s <"$f"; } 2>/dev/null || continue
		pid="${s%% *}"
		rest="${s##*) }"
		rest="${rest#* }"
		parent[$pid]="${rest%% *}"
	done
	local found=("$1") i=0 c
	while ((i < ${#found[@]})); do
		for c in "${!parent[@]}"; do
			[[ "${parent[$c]}" == "${found[i]}" ]] && found+=("$c")
		done
		i=$((i + 1))
	done
	echo "${found[*]}"
}

# cpu_ticks prints the user+system CPU time of the PIDs, in clock ticks.
cpu_ticks() {
	local t=0 p f
	for p in "$@"; do
		read -r -a f <<<"$(proc_fields "$p")"
		((${#f[@]} > 12)) || continue
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
}

# cpu_busy prints the busy time of CPU N (/proc/stat: user, nice, system,
# irq, softirq), in clock ticks. A process's utime+stime includes the
# softirq time it runs (loopback networking), so with the servers' own
# time taken out, what is left is what other processes used of that CPU.
cpu_busy() {
	local name user nice system irq softirq _
	while read -r name user nice system _ _ irq softirq _; do
		[[ "$name" == "cpu$1" ]] && echo $((user + nice + system + irq + softirq)) && return
	done </proc/stat
	echo 0
}

# rss_kib prints the sum of VmRSS of the PIDs, in KiB.
rss_kib() {
	local t=0 p k v _
	for p in "$@"; do
		while read -r k v _; do
			[[ "$k" == VmRSS: ]] && t=$((t + v))
		done 2>/dev/null <"/proc/$p/status" || true
	done
	echo "$t"
}

# rss_sampler writes the highest rss_kib of the PIDs seen so far to FILE,
# four times a second, until it is stopped.
rss_sampler() {
	local file="$1" max=0 v
	shift
	while :; do
		v="$(rss_kib "$@")"
		((v > max)) && max="$v" && echo "$max" >"$file"
		sleep 0.25
	done
}

# start_server runs a server on SERVER_CPU in the background, its output to
# LOG, and sets started to its PID (taskset and env exec it, so the PID is
# the server's own).
start_server() {
	local log="$1"
	shift
	taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
	pids+=("$!")
	started="$!"
}

# --- tools -----------------------------------------------------------------

# Debian packages for the load generators, nginx, HAProxy and the checks.
export PATH="$PATH:/usr/sbin"
missing=()
for pair in wrk:wrk h2load:nghttp2-client nginx:nginx haproxy:haproxy curl:curl openssl:openssl taskset:util-linux; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
	((EUID == 0)) || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
	say "installing ${missing[*]} (apt)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Caddy and Traefik are built from their Go modules, once, in the background
# while Postern builds; the binaries are kept in $CACHE/bin.
mkdir -p "$CACHE/bin" "$CACHE/logs"
caddy_bin="$CACHE/bin/caddy-$CADDY_VERSION"
traefik_bin="$CACHE/bin/traefik-$TRAEFIK_VERSION"
traefik_skip="$CACHE/bin/traefik-$TRAEFIK_VERSION.skip" # why it cannot be built here
wants() { case " $PEERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac }
caddy_build="" traefik_build=""
if wants caddy && [[ ! -x "$caddy_bin" ]]; then
	say "building caddy $CADDY_VERSION from its Go module in the background (several minutes; log: $CACHE/logs/caddy-$CADDY_VERSION.log)"
	rm -rf "$CACHE/bin/caddy.tmp"
	# timeout signals its whole process group, so stopping it stops go too.
	GOBIN="$CACHE/bin/caddy.tmp" timeout 2400 go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION" \
		>"$CACHE/logs/caddy-$CADDY_VERSION.log" 2>&1 &
	caddy_build="$!"
	pids+=("$caddy_build")
fi
if wants traefik && [[ ! -x "$traefik_bin" && ! -f "$traefik_skip" ]]; then
	say "building traefik $TRAEFIK_VERSION from its Go module in the background (10 minutes or more; log: $CACHE/logs/traefik-$TRAEFIK_VERSION.log)"
	timeout 3600 "$here/build-traefik.sh" "$TRAEFIK_VERSION" "$traefik_bin" >"$CACHE/logs/traefik-$TRAEFIK_VERSION.log" 2>&1 &
	traefik_build="$!"
	pids+=("$traefik_build")
fi

say "building postern and the benchmark backend"
make --no-print-directory build >/dev/null
CGO_ENABLED=0 go build -trimpath -o bin/bench-backend ./test/bench/peers/backend

# postern-base: bin/postern built at POSTERN_BASELINE from git archive's
# tree of that commit, as `make build` builds it, once per commit.
base_bin=""
if wants postern-base; then
	base_bin="$root/bin/postern-base-$base_commit"
	if [[ ! -x "$base_bin" ]]; then
		base_version="$(git describe --tags --always "$base_commit")"
		say "building postern at $POSTERN_BASELINE ($base_version) for postern-base"
		base_src="$(mktemp -d "$root/bin/postern-base.XXXXXX")"
		tmpdirs+=("$base_src")
		git archive "$base_commit" | tar -x -C "$base_src"
		# GOWORK=off: the tree sits under this checkout, whose go.work (if
		# any) must not pull this checkout's modules into that build.
		(cd "$base_src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$base_version" \
			-o "$base_src/postern" ./cmd/postern) || die "go build of postern at $POSTERN_BASELINE failed"
		mv "$base_src/postern" "$base_bin"
		rm -rf "$base_src"
	fi
fi

skipped=() # "peer: reason"
if [[ -n "$caddy_build" ]]; then
	say "waiting for the caddy build"
	rc=0
	wait "$caddy_build" || rc=$?
	forget "$caddy_build"
	if ((rc == 0)) && [[ -x "$CACHE/bin/caddy.tmp/caddy" ]]; then
		mv "$CACHE/bin/caddy.tmp/caddy" "$caddy_bin"
		rmdir "$CACHE/bin/caddy.tmp"
	else
		skipped+=("caddy: go install of $CADDY_VERSION failed: $(tail -n 1 "$CACHE/logs/caddy-$CADDY_VERSION.log")")
	fi
fi
if [[ -n "$traefik_build" ]]; then
	say "waiting for the traefik build"
	rc=0
	wait "$traefik_build" || rc=$?
	forget "$traefik_build"
	if ((rc == 3)); then
		tail -n 1 "$CACHE/logs/traefik-$TRAEFIK_VERSION.log" >"$traefik_skip"
	elif ((rc != 0)); then
		skipped+=("traefik: the build of $TRAEFIK_VERSION failed (exit $rc): $(tail -n 1 "$CACHE/logs/traefik-$TRAEFIK_VERSION.log")")
	fi
fi
if wants traefik && [[ -f "$traefik_skip" ]]; then
	skipped+=("traefik: $(cat "$traefik_skip") (remove $traefik_skip to try again)")
fi

peers=()
for p in $PEERS; do
	case "$p" in
	caddy) [[ -x "$caddy_bin" ]] || continue ;;
	traefik) [[ -x "$traefik_bin" ]] || continue ;;
	esac
	peers+=("$p")
done
for s in "${skipped[@]}"; do say "skipped $s"; done
((${#peers[@]})) || die "no peer to measure"

cpus="$(nproc)" # before this script is pinned to one CPU
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"

# From here on this script and the load generators share LOAD_CPU; only
# the servers run on SERVER_CPU.
taskset -pc "$LOAD_CPU" $$ >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- configuration -----------------------------------------------------------

mkdir -p "$RESULTS/raw"
RESULTS="$(cd "$RESULTS" && pwd)"
run="$(mktemp -d)"
chmod 755 "$run" # nginx's worker runs as nobody
tmpdirs+=("$run")

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
	-keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
cat "$run/cert.pem" "$run/key.pem" >"$run/haproxy.pem"

port() { # port PEER OFFSET: 1 HTTP, 2 HTTPS, 3 admin
	local i
	for i in "${!ALL_PEERS[@]}"; do
		[[ "${ALL_PEERS[$i]}" == "$1" ]] && echo $((BASE_PORT + 10 * i + $2)) && return
	done
}

# render TEMPLATE OUT PEER fills in the @NAME@ placeholders.
render() {
	sed -e "s|@RUN@|$run|g" -e "s|@HOST@|$HOST|g" \
		-e "s|@HTTP_ADDR@|127.0.0.1:$(port "$3" 1)|g" -e "s|@HTTPS_ADDR@|127.0.0.1:$(port "$3" 2)|g" \
		-e "s|@HTTP_PORT@|$(port "$3" 1)|g" -e "s|@HTTPS_PORT@|$(port "$3" 2)|g" \
		-e "s|@CERT@|$run/cert.pem|g" -e "s|@KEY@|$run/key.pem|g" -e "s|@PEM@|$run/haproxy.pem|g" \
		-e "s|@B1@|${BACKEND_IPS[0]}:$BACKEND_PORT|g" -e "s|@B2@|${BACKEND_IPS[1]}:$BACKEND_PORT|g" \
		-e "s|@B3@|${BACKEND_IPS[2]}:$BACKEND_PORT|g" -e "s|@B1_IP@|${BACKEND_IPS[0]}|g" \
		-e "s|@B2_IP@|${BACKEND_IPS[1]}|g" -e "s|@B3_IP@|${BACKEND_IPS[2]}|g" \
		-e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
		-e "s|@CERT_B64@|$(base64 -w0 "$run/cert.pem")|g" -e "s|@KEY_B64@|$(base64 -w0 "$run/key.pem")|g" \
		-e "s|@EXTRA_ANNOTATION@|${extra_annotation[$3]:+\\n    ${extra_annotation[$3]}}|g" \
		"$here/$1" >"$2"
}

declare -A peer_pid=() peer_version=()

start_peer() {
	local p="$1" log="$RESULTS/$1.log"
	case "$p" in
	nginx)
		mkdir -p "$run/nginx-tmp"
		render nginx.conf.tmpl "$run/nginx.conf" nginx
		start_server "$log" nginx -e "$run/nginx-error.log" -p "$run" -c "$run/nginx.conf"
		peer_version[$p]="$(nginx -v 2>&1 | sed 's/.*version: //')"
		;;
	haproxy)
		render haproxy.cfg.tmpl "$run/haproxy.cfg" haproxy
		start_server "$log" haproxy -db -f "$run/haproxy.cfg"
		peer_version[$p]="haproxy/$(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p')"
		;;
	caddy)
		render Caddyfile.tmpl "$run/Caddyfile" caddy
		mkdir -p "$run/caddy"
		start_server "$log" env GOMAXPROCS=1 HOME="$run/caddy" XDG_DATA_HOME="$run/caddy" XDG_CONFIG_HOME="$run/caddy" \
			"$caddy_bin" run --config "$run/Caddyfile" --adapter caddyfile
		peer_version[$p]="caddy/$CADDY_VERSION"
		;;
	traefik)
		render traefik.yml.tmpl "$run/traefik.yml" traefik
		render traefik-dynamic.yml.tmpl "$run/traefik-dynamic.yml" traefik
		start_server "$log" env GOMAXPROCS=1 "$traefik_bin" --configfile="$run/traefik.yml"
		peer_version[$p]="traefik/$TRAEFIK_VERSION"
		;;
	postern | postern-limit | postern-nginx | postern-base | postern-basic | postern-authurl)
		local bin=bin/postern
		[[ "$p" == postern-base ]] && bin="$base_bin"
		mkdir -p "$run/$p"
		render postern.yaml.tmpl "$run/$p/bench.yaml" "$p"
		[[ "$p" != postern-nginx ]] || render postern-canary.yaml.tmpl "$run/$p/canary.yaml" "$p"
		[[ "$p" != postern-basic ]] || render postern-users.yaml.tmpl "$run/$p/users.yaml" "$p"
		local flags=(--manifests "$run/$p" --http-addr "127.0.0.1:$(port "$p" 1)"
			--https-addr "127.0.0.1:$(port "$p" 2)" --metrics-addr "127.0.0.1:$(port "$p" 3)" --log-level warn)
		local help
		help="$("$bin" --help 2>&1 || true)"
		[[ "$help" == *-access-log* ]] && flags+=(--access-log=false)
		[[ "$help" == *-acme-directory* ]] && flags+=(--acme-directory=)
		start_server "$log" env GOMAXPROCS=1 "$bin" "${flags[@]}"
		peer_version[$p]="$("$bin" --version 2>/dev/null | head -n 1 | tr ' ' /)"
		[[ -z "${extra_annotation[$p]:-}" ]] || peer_version[$p]+=" ($p: ${extra_annotation[$p]//\\n    /, })"
		[[ "$p" != postern-base ]] || peer_version[$p]+=" ($p)"
		;;
	esac
	peer_pid[$p]="$started"
}

# fetch SCHEME PEER [curl args]: one request to the peer's virtual host;
# prints "status http_version" and leaves the body in $run/body.
fetch() {
	local scheme="$1" p="$2" port
	shift 2
	port="$(port "$p" "$([[ "$scheme" == https ]] && echo 2 || echo 1)")"
	[[ -z "${peer_header[$p]:-}" ]] || set -- -H "${peer_header[$p]}" "$@"
	curl -sS --max-time 5 --cacert "$run/cert.pem" --resolve "$HOST:$port:127.0.0.1" \
		-o "$run/body" -w '%{http_code} %{http_version}' "$@" "$scheme://$HOST:$port/" 2>/dev/null || true
}

wait_ready() {
	local p="$1" i
	for ((i = 0; i < 300; i++)); do
		[[ "$(fetch http "$p")" == "200 "* ]] && return 0
		[[ -n "$(proc_state "${peer_pid[$p]}")" ]] || die "$p exited at start; its output: $(tail -n 5 "$RESULTS/$p.log")"
		sleep 0.1
	done
	die "$p did not answer 200 on http://$HOST:$(port "$p" 1)/ within 30 s; its output: $(tail -n 5 "$RESULTS/$p.log")"
}

# check fails loudly unless the peer answers 200 with a backend's body over
# every protocol the scenarios use, with the benchmark's certificate, and
# spreads requests over all three backends (and postern-limit's route has
# its body limit).
check() {
	local p="$1" got want name seen=()
	local cases=("http|200 1.1|--http1.1" "https|200 1.1|--http1.1" "https|200 2|--http2"
		"https|200 1.1|--http1.1 -H Connection:close")
	local c scheme args
	for c in "${cases[@]}"; do
		IFS='|' read -r scheme want args <<<"$c"
		# shellcheck disable=SC2086 # args are words
		got="$(fetch "$scheme" "$p" $args)"
		[[ "$got" == "$want" ]] || die "check $p: $scheme ($args) answered '$got', want '$want'"
		grep -q '^bench backend ' "$run/body" || die "check $p: $scheme ($args) body is not the backend's: $(head -c 200 "$run/body")"
	done
	# 30 requests: postern-nginx's sessions land at random (a fresh cookie
	# each), which 6 would not spread over three backends often enough.
	for _ in $(seq 30); do
		fetch http "$p" >/dev/null
		name="$(cut -d: -f1 "$run/body")"
		[[ " ${seen[*]} " == *" $name "* ]] || seen+=("$name")
	done
	((${#seen[@]} == 3)) || die "check $p: 30 requests reached ${#seen[@]} backend(s) (${seen[*]}), want all 3"
	# A Postern peer's table as it built it, kept with the results (an old
	# POSTERN_BASELINE may have no /debug/routes); a postern-limit whose
	# route had no limit would measure nothing new.
	case "$p" in postern*)
		curl -sSf --max-time 5 -o "$RESULTS/$p-routes.json" "http://127.0.0.1:$(port "$p" 3)/debug/routes" 2>/dev/null ||
			rm -f "$RESULTS/$p-routes.json"
		;;
	esac
	[[ "$p" != postern-limit ]] || grep -Eqs '"maxBodySize": [1-9]' "$RESULTS/$p-routes.json" ||
		die "check $p: its route has no body limit in /debug/routes on $(port "$p" 3)"
	if [[ "$p" == postern-basic ]]; then
		grep -qs '"basicAuth"' "$RESULTS/$p-routes.json" || die "check $p: its route has no basicAuth in /debug/routes"
		[[ "$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' --resolve "$HOST:$(port "$p" 1):127.0.0.1" "http://$HOST:$(port "$p" 1)/")" == 401 ]] ||
			die "check $p: a request without credentials was not answered 401"
	fi
	[[ "$p" != postern-authurl ]] || grep -qs '"externalAuth"' "$RESULTS/$p-routes.json" ||
		die "check $p: its route has no externalAuth in /debug/routes"
	if [[ "$p" == postern-nginx ]]; then
		for want in '"rewrite"' '"cors"' '"affinity"' '"canary"'; do
			grep -qs "$want" "$RESULTS/$p-routes.json" ||
				die "check $p: its route has no $want in /debug/routes on $(port "$p" 3)"
		done
		fetch http "$p" -D "$run/headers" >/dev/null
		grep -qi '^access-control-allow-origin: \*' "$run/headers" && grep -qi '^set-cookie: INGRESSCOOKIE=' "$run/headers" ||
			die "check $p: a response without its CORS field or session cookie: $(tr '\r\n' '  ' <"$run/headers")"
	fi
}

# --- load ------------------------------------------------------------------

# unit_us converts wrk's "1.23ms" to microseconds.
unit_us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : (u == "m") ? 60000000 : -1
		if (f < 0) { print "?"; exit 1 }
		printf "%.0f\n", n * f
	}'
}

# load SCENARIO PEER SECONDS OUT runs the load generator on LOAD_CPU and
# writes its output to OUT; then parse_load reads it.
load() {
	local s="$1" p="$2" secs="$3" out="$4" url
	local wrk=(timeout $((secs + 60)) taskset -c "$LOAD_CPU" wrk -t1 "-c$CONNECTIONS" "-d${secs}s" --timeout 5s --latency -s "$here/resolve.lua")
	local h2=()
	if [[ -n "${peer_header[$p]:-}" ]]; then
		wrk+=(-H "${peer_header[$p]}")
		h2+=(-H "${peer_header[$p]}")
	fi
	case "$s" in
	http1) "${wrk[@]}" "http://$HOST:$(port "$p" 1)/" >"$out" 2>&1 ;;
	https1) "${wrk[@]}" "https://$HOST:$(port "$p" 2)/" >"$out" 2>&1 ;;
	handshake) "${wrk[@]}" -H 'Connection: close' "https://$HOST:$(port "$p" 2)/" >"$out" 2>&1 ;;
	h2)
		url="https://$HOST:$(port "$p" 2)/"
		timeout $((secs + 60)) taskset -c "$LOAD_CPU" h2load -t1 "-c$CONNECTIONS" "-m$H2_STREAMS" -D "$secs" "${h2[@]}" \
			--connect-to="127.0.0.1:$(port "$p" 2)" --log-file="$out.log" "$url" >"$out" 2>&1
		;;
	esac
}

# parse_load SCENARIO OUT prints "requests rps p50_us p99_us errors".
parse_load() {
	local s="$1" out="$2"
	if [[ "$s" == h2 ]]; then
		local requests rps errors
		requests="$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' "$out")"
		rps="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")"
		errors="$(awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) f = $i }
			/^status codes:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^[45]xx/) s += $i }
			END { print (f > s ? f : s) + 0 }' "$out")"
		[[ -n "$requests" && -n "$rps" && -s "$out.log" ]] || { echo "? ? ? ? ?"; return; }
		# h2load prints no percentiles; its per-request log has each
		# request's time to the end of the response, in microseconds.
		cut -f3 "$out.log" | sort -n | awk -v q="$requests $rps $errors" '
			{ v[NR] = $1 }
			END {
				if (NR == 0) { print q, "? ?"; exit }
				i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
				i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
				split(q, a, " "); print a[1], a[2], v[i50], v[i99], a[3]
			}'
		rm -f "$out.log"
		return
	fi
	local requests rps p50 p99 non2xx sock
	requests="$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$out")"
	rps="$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$out")"
	p50="$(awk '$1 == "50%" { print $2 }' "$out")"
	p99="$(awk '$1 == "99%" { print $2 }' "$out")"
	non2xx="$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")"
	sock="$(sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$out")"
	[[ -n "$requests" && -n "$rps" && -n "$p50" && -n "$p99" ]] || { echo "? ? ? ? ?"; return; }
	local errors=$((${non2xx:-0}))
	local n
	for n in $sock; do errors=$((errors + n)); done
	echo "$requests $rps $(unit_us "$p50") $(unit_us "$p99") $errors"
}

# --- the run ---------------------------------------------------------------

tick_hz="$(getconf CLK_TCK)"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc: $cpus"
	echo "cpu: $cpu_model"
	echo "kernel: $(uname -sr)"
	echo "go: $(go version | cut -d' ' -f3)"
	echo "wrk: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f2)"
	echo "h2load: $(h2load --version | cut -d' ' -f2)"
	echo "load average at start: $load_start"
	echo "settings: DURATION=${dur}s REPEATS=$REPEATS WARMUP=${warmup}s CONNECTIONS=$CONNECTIONS H2_STREAMS=$H2_STREAMS SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU"
} >"$RESULTS/machine.txt"

say "backends: 3 x bin/bench-backend (GOMAXPROCS=1) on ${BACKEND_IPS[*]} port $BACKEND_PORT, CPU $SERVER_CPU"
backend_pids=()
for i in 0 1 2; do
	start_server "$RESULTS/backend-$((i + 1)).log" env GOMAXPROCS=1 bin/bench-backend --name "b$((i + 1))" --listen "${BACKEND_IPS[$i]}:$BACKEND_PORT"
	backend_pids+=("$started")
done

for p in "${peers[@]}"; do start_peer "$p"; done
for p in "${peers[@]}"; do
	wait_ready "$p"
	check "$p"
	sleep 1
	read -r -a procs <<<"$(tree "${peer_pid[$p]}")"
	echo "$p $(rss_kib "${procs[@]}")" >>"$RESULTS/idle.tsv"
	say "ready: $p (${peer_version[$p]}), answers 200 over HTTP/1.1, HTTPS, HTTP/2 and new TLS connections, round robin over 3 backends"
	echo "$p ${peer_version[$p]}" >>"$RESULTS/versions.txt"
done

# The backend alone, without a proxy: it must be far from the limit.
say "measuring the backend alone (wrk straight to one backend, ${dur}s)"
before="$(cpu_ticks "${backend_pids[@]}")"
timeout $((dur + 60)) taskset -c "$LOAD_CPU" wrk -t1 "-c$CONNECTIONS" "-d${dur}s" --latency \
	"http://${BACKEND_IPS[0]}:$BACKEND_PORT/" >"$RESULTS/raw/backend-alone.txt" 2>&1
after="$(cpu_ticks "${backend_pids[@]}")"
read -r b_req b_rps b_p50 b_p99 b_err <<<"$(parse_load http1 "$RESULTS/raw/backend-alone.txt")"
backend_line="$(awk -v r="$b_req" -v rps="$b_rps" -v t=$((after - before)) -v hz="$tick_hz" -v p50="$b_p50" -v p99="$b_p99" -v e="$b_err" \
	'BEGIN { printf "backend alone (HTTP/1.1 keep-alive, no proxy): %.0f req/s, p50 %.2f ms, p99 %.2f ms, %.1f CPU µs/req, %d errors", rps, p50 / 1000, p99 / 1000, t * 1e6 / hz / r, e }')"
say "$backend_line"

total=$((REPEATS * $(wc -w <<<"$SCENARIOS") * ${#peers[@]}))
if ((warmup > 0)); then
	say "warming up each peer and scenario for ${warmup}s"
	for s in $SCENARIOS; do
		for p in "${peers[@]}"; do load "$s" "$p" "$warmup" "$RESULTS/raw/warmup-$s-$p.txt" || true; done
	done
	rm -f "$RESULTS"/raw/warmup-*.log
fi

say "running $total runs of ${dur}s: $REPEATS repeat(s) x scenarios ($SCENARIOS) x peers (${peers[*]})"
printf 'peer\tscenario\trepeat\trequests\trps\tp50_us\tp99_us\terrors\tcpu_ticks\tbackend_ticks\trss_load_kib\tothers_ticks\twall_ms\n' >"$RESULTS/runs.tsv"
n=0
for ((r = 1; r <= REPEATS; r++)); do
	for s in $SCENARIOS; do
		for p in "${peers[@]}"; do
			n=$((n + 1))
			out="$RESULTS/raw/$r-$s-$p.txt"
			read -r -a procs <<<"$(tree "${peer_pid[$p]}")"
			rss_file="$RESULTS/raw/$r-$s-$p.rss"
			rss_sampler "$rss_file" "${procs[@]}" &
			sampler="$!"
			pids+=("$sampler")
			before="$(cpu_ticks "${procs[@]}")"
			b_before="$(cpu_ticks "${backend_pids[@]}")"
			c_before="$(cpu_busy "$SERVER_CPU")"
			t_before="$(date +%s%N)"
			rc=0
			load "$s" "$p" "$dur" "$out" || rc=$?
			after="$(cpu_ticks "${procs[@]}")"
			b_after="$(cpu_ticks "${backend_pids[@]}")"
			c_after="$(cpu_busy "$SERVER_CPU")"
			t_after="$(date +%s%N)"
			stop "$sampler"
			[[ -n "$(proc_state "${peer_pid[$p]}")" ]] || die "$p died during $s; its output: $(tail -n 5 "$RESULTS/$p.log")"
			((rc == 0)) || say "  warning: the load generator exited with status $rc (see $out)"
			read -r req rps p50 p99 errs <<<"$(parse_load "$s" "$out")"
			[[ "$req" =~ ^[0-9]+$ && "$req" -gt 0 ]] || die "$p $s: no result from the load generator; its output: $(tail -n 5 "$out")"
			rss_load="$(cat "$rss_file" 2>/dev/null || echo 0)"
			others=$((c_after - c_before - (after - before) - (b_after - b_before)))
			printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\n' "$p" "$s" "$r" "$req" "$rps" "$p50" "$p99" "$errs" \
				$((after - before)) $((b_after - b_before)) "$rss_load" $((others > 0 ? others : 0)) $(((t_after - t_before) / 1000000)) >>"$RESULTS/runs.tsv"
			awk -v n="$n" -v total="$total" -v r="$r" -v s="$s" -v p="$p" -v rps="$rps" -v p99="$p99" -v req="$req" \
				-v t=$((after - before)) -v hz="$tick_hz" -v e="$errs" \
				'BEGIN { printf "[%d/%d] repeat %d %-9s %-13s %8.0f req/s  p99 %7.2f ms  %6.1f CPU µs/req  %d errors\n", n, total, r, s, p, rps, p99 / 1000, t * 1e6 / hz / req, e }'
			sleep 1
		done
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/machine.txt"

# --- the table -----------------------------------------------------------------

# Medians over the repeats (errors: the sum; RSS under load: the highest).
# Each peer's CPU per request is also shown relative to nginx's, when nginx
# ran.
table() {
	awk -F'\t' -v hz="$tick_hz" -v peers="${peers[*]}" -v scenarios="$SCENARIOS" -v idlefile="$RESULTS/idle.tsv" '
		function median(list,    a, n, i, j, t) {
			n = split(list, a, " ")
			for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
			return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		BEGIN { while ((getline line < idlefile) > 0) { split(line, f, " "); idle[f[1]] = f[2] } }
		NR == 1 { next }
		{
			k = $1 SUBSEP $2
			rps[k] = rps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7
			cpu[k] = cpu[k] " " ($9 * 1e6 / hz / $4); err[k] += $8
			if ($11 + 0 > rss[k] + 0) rss[k] = $11
		}
		END {
			print "| peer | scenario | req/s | p50 ms | p99 ms | CPU µs/req | RSS idle MiB | RSS load MiB | errors | CPU vs nginx |"
			print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
			ns = split(scenarios, S, " "); np = split(peers, P, " ")
			for (i = 1; i <= ns; i++) {
				ref = (("nginx" SUBSEP S[i]) in cpu) ? median(cpu["nginx" SUBSEP S[i]]) : 0
				for (j = 1; j <= np; j++) {
					k = P[j] SUBSEP S[i]
					if (!(k in rps)) continue
					c = median(cpu[k])
					ratio = (ref > 0) ? sprintf("%.2fx", c / ref) : "n/a"
					printf "| %s | %s | %.0f | %.2f | %.2f | %.1f | %.1f | %.1f | %d | %s |\n", P[j], S[i], median(rps[k]), median(p50[k]) / 1000, median(p99[k]) / 1000, c, idle[P[j]] / 1024, rss[k] / 1024, err[k], ratio
				}
			}
		}' "$RESULTS/runs.tsv"
}

# What other processes (not this benchmark's servers) used of SERVER_CPU.
others_share="$(awk -F'\t' -v hz="$tick_hz" 'NR > 1 && $13 > 0 { v = 100 * $12 / hz / ($13 / 1000); s += v; if (v > max) max = v; n++ }
	END { if (n) printf "%.1f%% of its time on average, %.1f%% at most in one run", s / n, max; else print "unknown" }' "$RESULTS/runs.tsv")"
backend_cpu="$(awk -F'\t' -v hz="$tick_hz" 'NR > 1 { v = $10 * 1e6 / hz / $4; if (min == "" || v < min) min = v; if (v > max) max = v }
	END { printf "%.1f to %.1f", min, max }' "$RESULTS/runs.tsv")"
{
	echo
	echo "Peers benchmark, $(date -u +%Y-%m-%d), $cpus CPUs ($cpu_model), servers on CPU $SERVER_CPU, load on CPU $LOAD_CPU."
	echo "Medians of $REPEATS run(s) of ${dur}s, $CONNECTIONS connections (HTTP/2: $H2_STREAMS streams each); CPU µs/req counts the proxy's own processes only."
	echo "Peers: $(for p in "${peers[@]}"; do printf '%s ' "${peer_version[$p]}"; done)"
	for s in "${skipped[@]}"; do echo "Skipped $s"; done
	echo "The $backend_line; backends' CPU while proxied: $backend_cpu µs/req."
	echo "Other processes on CPU $SERVER_CPU (the servers' CPU) during the runs: $others_share."
	echo
	table
} | tee "$RESULTS/table.md"
say
say "raw outputs: $RESULTS"
