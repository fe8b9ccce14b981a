#!/usr/bin/env bash
# A 3-node shoal cluster on multipass instances (Ubuntu).
#
#   CGO_ENABLED=0 make build           # the instances run the host's bin/shoal
#   lab/multipass/lab.sh up            # launch shoal-1..3, create the cluster on shoal-1, join the others
#   export SHOAL_CONFIG=~/.shoal/multipass.config
#   bin/shoal node ls                  # from the host (Linux), or: multipass exec shoal-1 -- shoal node ls
#   lab/multipass/lab.sh status
#   lab/multipass/lab.sh down          # delete and purge the instances
#
# Each instance is launched with lab/multipass/cloud-init.yaml (containerd,
# runc, containernetworking-plugins, iptables, nftables, iproute2), gets
# bin/shoal and lab/vagrant/provision.sh through `multipass transfer`, and
# runs provision.sh, which runs the agent as shoal-agent.service: with
# --init on the first instance, with the join line it wrote on the others.
# The agents advertise the instances' own addresses, which the host reaches,
# so the client configuration copied to the host works from there.
# `lab.sh up` again launches what is missing and changes nothing that runs.
#
# bin/shoal must be a Linux program for the instances' architecture; build
# it with CGO_ENABLED=0 (on macOS: GOOS=linux GOARCH=arm64 CGO_ENABLED=0 make
# build on Apple silicon, GOARCH=amd64 on Intel).
#
# Settings (environment): SHOAL_LAB_NODES (3), SHOAL_LAB_PREFIX (shoal),
# SHOAL_LAB_IMAGE (24.04), SHOAL_LAB_CPUS (2), SHOAL_LAB_MEMORY (2G),
# SHOAL_LAB_DISK (10G), SHOAL_BIN (bin/shoal), SHOAL_LAB_CONFIG
# (~/.shoal/multipass.config).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
NODES=${SHOAL_LAB_NODES:-3}
PREFIX=${SHOAL_LAB_PREFIX:-shoal}
IMAGE=${SHOAL_LAB_IMAGE:-24.04}
CPUS=${SHOAL_LAB_CPUS:-2}
MEMORY=${SHOAL_LAB_MEMORY:-2G}
DISK=${SHOAL_LAB_DISK:-10G}
BIN=${SHOAL_BIN:-$root/bin/shoal}
CONFIG=${SHOAL_LAB_CONFIG:-$HOME/.shoal/multipass.config}
CLOUD_INIT=$here/cloud-init.yaml
PROVISION=$root/lab/vagrant/provision.sh

die() {
	echo "lab.sh: $*" >&2
	exit 1
}

log() { echo "==> $*"; }

names() {
	local i
	for ((i = 1; i <= NODES; i++)); do
		echo "$PREFIX-$i"
	done
}

exists() { multipass info "$1" >/dev/null 2>&1; }

# push FILE NAME:PATH. A strictly confined multipass (the snap) reads only
# non-hidden files under $HOME; streaming through stdin works everywhere.
push() {
	multipass transfer "$1" "$2" 2>/dev/null || multipass transfer - "$2" <"$1"
}

# The address the instance's default route leaves from: the one the host
# and the other instances reach it at.
addr_of() {
	local a
	a=$(multipass exec "$1" -- ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p' || true)
	if [ -z "$a" ]; then
		a=$(multipass exec "$1" -- hostname -I | awk '{print $1}' || true)
	fi
	[ -n "$a" ] || die "cannot find the address of $1"
	echo "$a"
}

launch() {
	local name=$1
	if ! exists "$name"; then
		log "launching $name ($IMAGE, $CPUS CPUs, $MEMORY, $DISK)"
		# The cloud-init file through stdin, as push does for files.
		multipass launch --name "$name" --cpus "$CPUS" --memory "$MEMORY" --disk "$DISK" \
			--timeout 900 --cloud-init - "$IMAGE" <"$CLOUD_INIT"
	elif ! grep -q 'State:.*Running' <<<"$(multipass info "$name")"; then
		log "starting $name"
		multipass start "$name"
	fi
	# Packages are installed by cloud-init; wait for it to be done. A
	# failure there is reported, and provision.sh installs what is missing.
	multipass exec "$name" -- cloud-init status --wait >/dev/null ||
		echo "lab.sh: cloud-init on $name reported an error; provision.sh installs what is missing" >&2
	push "$BIN" "$name:/tmp/shoal"
	push "$PROVISION" "$name:/tmp/shoal-provision.sh"
}

provision() { # name, arguments...
	local name=$1 addr
	shift
	addr=$(addr_of "$name")
	log "provisioning $name ($addr)"
	multipass exec "$name" -- sudo bash /tmp/shoal-provision.sh --name "$name" --addr "$addr" \
		--binary /tmp/shoal "$@"
}

ready_count() {
	multipass exec "$1" -- sudo shoal node ls 2>/dev/null | grep -c ' Ready ' || true
}

up() {
	command -v multipass >/dev/null || die "multipass not found: https://multipass.run/install"
	[ -f "$BIN" ] || die "$BIN not found: run 'CGO_ENABLED=0 make build' first"
	[ "$(head -c 4 "$BIN" | od -An -c | tr -d ' \n')" = '177ELF' ] ||
		die "$BIN is not a Linux program: build it with GOOS=linux CGO_ENABLED=0 make build"
	[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "SHOAL_LAB_NODES: want a number, got '$NODES'"

	local all first name line endpoint token
	mapfile -t all < <(names)
	first=${all[0]}
	for name in "${all[@]}"; do
		launch "$name"
	done

	provision "$first" --init --user ubuntu
	line=$(multipass exec "$first" -- sudo cat /var/lib/shoal-lab/join)
	endpoint=$(sed -n 's/.*--join \([^ ]*\).*/\1/p' <<<"$line")
	token=$(sed -n 's/.*--token \([^ ]*\).*/\1/p' <<<"$line")
	if [ -z "$endpoint" ] || [ -z "$token" ]; then
		die "no join line on $first (/var/lib/shoal-lab/join)"
	fi
	for name in "${all[@]:1}"; do
		provision "$name" --join "$endpoint" --token "$token"
	done

	mkdir -p "$(dirname "$CONFIG")"
	(
		umask 077
		multipass exec "$first" -- sudo cat /var/lib/shoal-lab/config >"$CONFIG.tmp"
	)
	mv -f "$CONFIG.tmp" "$CONFIG"

	log "waiting for $NODES Ready nodes"
	local deadline=$((SECONDS + 120))
	until [ "$(ready_count "$first")" -ge "$NODES" ]; do
		if [ $SECONDS -ge $deadline ]; then
			multipass exec "$first" -- sudo shoal node ls >&2 || true
			die "the cluster did not reach $NODES Ready nodes in 120 s"
		fi
		sleep 2
	done
	multipass exec "$first" -- sudo shoal node ls
	echo
	echo "The cluster's API is at $endpoint. Use it from this machine with:"
	echo
	echo "    export SHOAL_CONFIG=$CONFIG"
	echo
	echo "Remove the instances with: $0 down"
}

status() {
	local all name
	mapfile -t all < <(names)
	for name in "${all[@]}"; do
		if exists "$name"; then
			multipass info "$name" | grep -E '^(Name|State|IPv4):'
		else
			echo "$name: not launched"
		fi
	done
	if exists "${all[0]}"; then
		multipass exec "${all[0]}" -- sudo shoal node ls || true
	fi
}

down() {
	local all=() name
	while read -r name; do
		if exists "$name"; then
			all+=("$name")
		fi
	done < <(names)
	if [ ${#all[@]} -gt 0 ]; then
		log "deleting ${all[*]}"
		multipass delete --purge "${all[@]}"
	fi
	rm -f "$CONFIG"
}

case "${1:-}" in
up) up ;;
status) status ;;
down) down ;;
*)
	echo "usage: $0 up|status|down" >&2
	exit 2
	;;
esac
