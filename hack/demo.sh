#!/usr/bin/env bash
# Brings up a 3-node shoal cluster on this machine (agents on 127.0.0.11,
# .12 and .13 with the default ports), applies examples/web.yaml and shows
# the result. `hack/demo.sh down` removes every trace.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/shoal
DIR=${SHOAL_DEMO_DIR:-/tmp/shoal-demo}
export SHOAL_CONFIG=${SHOAL_CONFIG:-$HOME/.shoal/demo.config}

down() {
	if [ -d "$DIR" ]; then
		for pidfile in "$DIR"/*.pid; do
			[ -e "$pidfile" ] || continue
			kill "$(cat "$pidfile")" 2>/dev/null || true
		done
		sleep 0.5
		for pidfile in "$DIR"/*.pid; do
			[ -e "$pidfile" ] || continue
			kill -9 "$(cat "$pidfile")" 2>/dev/null || true
		done
		rm -rf "$DIR"
	fi
	rm -f "$SHOAL_CONFIG"
}

wait_for() { # seconds, description, command...
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "timed out waiting for $what; agent logs are in $DIR" >&2
			tail -n 20 "$DIR"/*.log >&2 || true
			exit 1
		fi
		sleep 0.2
	done
}

start_agent() { # n, extra args...
	local n=$1
	shift
	nohup "$BIN" agent --advertise-addr "127.0.0.1$n" --data-dir "$DIR/n$n" --node-name "node$n" "$@" \
		>"$DIR/n$n.out" 2>"$DIR/n$n.log" &
	echo $! >"$DIR/n$n.pid"
}

up() {
	down
	mkdir -p "$DIR"
	start_agent 1 --init
	wait_for 30 "the first agent to create the cluster" grep -q -- "--token" "$DIR/n1.out"
	join=$(grep -o -- "--join .*" "$DIR/n1.out")
	# shellcheck disable=SC2086
	start_agent 2 $join
	# shellcheck disable=SC2086
	start_agent 3 $join
	formed() {
		local ls
		ls=$("$BIN" node ls 2>/dev/null) || return 1
		[ "$(grep -c ' Ready ' <<<"$ls")" = 3 ] && [ "$(grep -cE ' (leader|voter) ' <<<"$ls")" = 3 ]
	}
	wait_for 60 "3 Ready voters" formed
	echo "\$ shoal node ls"
	"$BIN" node ls
	echo
	echo "\$ shoal apply -f examples/web.yaml"
	"$BIN" apply -f examples/web.yaml
	echo
	echo "\$ shoal get deploy,svc   (through node3's API)"
	"$BIN" --server 127.0.0.13:7443 get deployments
	"$BIN" --server 127.0.0.13:7443 get services
	echo
	echo "The cluster runs on; use it with:  export SHOAL_CONFIG=$SHOAL_CONFIG"
	echo "Remove it with:                   make demo-down"
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
