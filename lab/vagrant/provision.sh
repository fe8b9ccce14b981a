#!/usr/bin/env bash
# Makes a Debian 12 or Ubuntu machine a shoal node: installs what the agent
# needs from the distribution's packages, installs the shoal binary, and runs
# `shoal agent` under systemd (shoal-agent.service). The Vagrantfile at the
# top of the repository and lab/multipass/lab.sh both run it, as root, on
# each machine.
#
#   provision.sh --init --name node1 --addr 192.168.56.11 [--binary /tmp/shoal]
#   provision.sh --join 192.168.56.11:7443 --token SHOAL-1-... --name node2 --addr 192.168.56.12
#   provision.sh --join-file /tmp/shoal-join --name node3 --addr 192.168.56.13
#
# Running it again changes nothing that is in place: a node whose data
# directory already holds it (node.json) restarts as that node, so --init
# and --join act only on the first start; the agent restarts only when its
# binary, unit or arguments changed.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: provision.sh (--init | --join HOST:PORT --token TOKEN | --join-file FILE)
                    --name NODE --addr IP [options]

  --init               create the cluster on this machine (first start only)
  --join HOST:PORT     join the cluster whose API is at HOST:PORT (first start only)
  --token TOKEN        the join token (SHOAL-1-...), with --join
  --join-file FILE     read --join and --token from FILE, a line as --init
                       writes it ("shoal agent --join HOST:PORT --token TOKEN")
  --name NODE          the node's name (--node-name)
  --addr IP            the address other nodes reach this one at (--advertise-addr)
  --binary PATH        the shoal binary to install as /usr/local/bin/shoal
                       (default: keep the installed one)
  --lab-dir DIR        with --init: where the join line (DIR/join) and the admin
                       client configuration (DIR/config) are written
                       (default /var/lib/shoal-lab)
  --user USER          also install the admin client configuration as
                       ~USER/.shoal/config (--init only)
  --data-dir DIR       the agent's --data-dir (default /var/lib/shoal)
  --no-install         do not apt-get install missing packages
  --timeout SECONDS    how long to wait for the node to be up (default 180)
  --check              check the arguments, print the agent's arguments that
                       would be written to /etc/default/shoal-agent, and exit:
                       changes nothing, needs no root
EOF
}

die() {
	echo "provision.sh: $*" >&2
	exit 1
}

mode="" init=0 join="" token="" join_file="" name="" addr="" binary=""
lab_dir=/var/lib/shoal-lab user="" data_dir=/var/lib/shoal install=1 timeout=180 check=0
while [ $# -gt 0 ]; do
	case $1 in
	--init) mode=init init=1 ;;
	--join) mode=join join=${2:?--join needs HOST:PORT} && shift ;;
	--token) token=${2:?--token needs a value} && shift ;;
	--join-file) mode=join join_file=${2:?--join-file needs a file} && shift ;;
	--name) name=${2:?--name needs a value} && shift ;;
	--addr) addr=${2:?--addr needs an IP address} && shift ;;
	--binary) binary=${2:?--binary needs a path} && shift ;;
	--lab-dir) lab_dir=${2:?--lab-dir needs a directory} && shift ;;
	--user) user=${2:?--user needs a user name} && shift ;;
	--data-dir) data_dir=${2:?--data-dir needs a directory} && shift ;;
	--no-install) install=0 ;;
	--timeout) timeout=${2:?--timeout needs seconds} && shift ;;
	--check) check=1 ;;
	-h | --help) usage && exit 0 ;;
	*) usage >&2 && exit 2 ;;
	esac
	shift
done
if [ -z "$mode" ]; then
	usage >&2
	exit 2
fi
if [ -z "$name" ] || [ -z "$addr" ]; then
	usage >&2
	exit 2
fi
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout: want a number of seconds, got '$timeout'"
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--name: '$name' is not a node name"
[[ $data_dir =~ ^/[A-Za-z0-9._/-]+$ ]] || die "--data-dir: '$data_dir' must be an absolute path without spaces"
[[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--addr: '$addr' is not an IPv4 address"
if [ -n "$join_file" ]; then
	[ -s "$join_file" ] || die "no join line in $join_file: create the cluster first (provision the first node with --init)"
	line=$(grep -m1 -- '--join' "$join_file" || true)
	join=$(sed -n 's/.*--join[= ]\([^ ]*\).*/\1/p' <<<"$line")
	token=$(sed -n 's/.*--token[= ]\([^ ]*\).*/\1/p' <<<"$line")
	if [ -z "$join" ] || [ -z "$token" ]; then
		die "$join_file holds no '--join HOST:PORT --token TOKEN' line"
	fi
fi
[[ $token =~ ^[A-Za-z0-9._-]*$ ]] || die "--token: '$token' is not a join token"
[[ $join =~ ^[A-Za-z0-9.:_-]*$ ]] || die "--join: '$join' is not HOST:PORT"
if [ "$mode" = join ] && [ -z "$token" ]; then
	die "--join needs --token (print it with 'shoal token' on a node of the cluster)"
fi
if [ "$init" = 1 ] && [ -n "$join$join_file" ]; then
	die "--init and --join exclude each other"
fi
agent_args="--advertise-addr $addr --node-name $name --data-dir $data_dir"
if [ "$mode" = init ]; then
	bootstrap_args="--init"
else
	bootstrap_args="--join $join --token $token"
fi
if [ "$check" = 1 ]; then
	echo "SHOAL_AGENT_ARGS=\"$agent_args\""
	echo "SHOAL_BOOTSTRAP_ARGS=\"$bootstrap_args\""
	exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root"

BIN=/usr/local/bin/shoal
UNIT=/etc/systemd/system/shoal-agent.service
ENVFILE=/etc/default/shoal-agent
ADMIN_CONFIG=/root/.shoal/config
changed=0 # something the running agent was started with changed

log() { echo "==> [$name] $*"; }

# write_if_changed FILE MODE: replaces FILE with stdin when they differ.
write_if_changed() {
	local file=$1 mode=$2 tmp
	tmp=$(mktemp "$file.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	if [ -e "$file" ] && cmp -s "$tmp" "$file"; then
		rm -f "$tmp"
		return 1
	fi
	mv -f "$tmp" "$file"
}

install_packages() {
	local need=()
	command -v containerd >/dev/null || need+=(containerd)
	command -v runc >/dev/null || need+=(runc)
	[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
	command -v iptables >/dev/null || need+=(iptables)
	command -v nft >/dev/null || need+=(nftables)
	command -v ip >/dev/null || need+=(iproute2)
	[ ${#need[@]} -gt 0 ] || return 0
	[ "$install" = 1 ] || die "missing packages: ${need[*]} (install them, or drop --no-install)"
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
}

install_binary() {
	if [ -z "$binary" ]; then
		[ -x "$BIN" ] || die "no shoal binary installed at $BIN: give one with --binary"
		return 0
	fi
	[ -f "$binary" ] || die "--binary $binary: no such file"
	# Copied in without its mode (file provisioners, multipass transfer):
	# made executable by the install, then tried.
	install -m 0755 "$binary" "$BIN.new"
	if ! "$BIN.new" --help >/dev/null 2>&1; then
		rm -f "$BIN.new"
		die "$binary does not run on this machine ($(uname -m)); build it for Linux on this architecture, for example: GOOS=linux GOARCH=amd64 CGO_ENABLED=0 make build"
	fi
	if [ -x "$BIN" ] && cmp -s "$BIN.new" "$BIN"; then
		rm -f "$BIN.new"
		return 0
	fi
	log "installing $BIN"
	mv -f "$BIN.new" "$BIN"
	changed=1
}

# Pods on a bridge need bridge netfilter, which is a module on these kernels.
load_modules() {
	modprobe br_netfilter 2>/dev/null || [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
		die "cannot load the br_netfilter module"
	echo br_netfilter | write_if_changed /etc/modules-load.d/shoal.conf 0644 || true
}

write_unit() {
	# KillMode=process, as containerd.service has: stopping the agent must
	# not kill what it started that outlives it (a containerd of its own and
	# the containers' shims); the agent stops its containerd itself.
	if write_if_changed "$UNIT" 0644 <<EOF; then
[Unit]
Description=shoal agent
Documentation=https://github.com/shoalproj/shoal
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
EnvironmentFile=$ENVFILE
Environment=SHOAL_CONFIG=$ADMIN_CONFIG
ExecStart=$BIN agent \$SHOAL_AGENT_ARGS \$SHOAL_BOOTSTRAP_ARGS
Restart=always
RestartSec=3
KillMode=process
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
EOF
		changed=1
		systemctl daemon-reload
	fi
}

# write_env BOOTSTRAP: the agent's arguments; BOOTSTRAP (--init, or --join
# and --token) is there only until the data directory holds the node.
write_env() {
	local bootstrap=$1
	if write_if_changed "$ENVFILE" 0600 <<EOF; then
# Written by lab/vagrant/provision.sh. SHOAL_BOOTSTRAP_ARGS is used for the
# first start only and removed once $data_dir/node.json exists.
SHOAL_AGENT_ARGS="$agent_args"
SHOAL_BOOTSTRAP_ARGS="$bootstrap"
EOF
		return 0
	fi
	return 1
}

wait_for() { # description, command...
	local what=$1 deadline=$((SECONDS + timeout))
	shift
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "provision.sh: timed out after ${timeout}s waiting for $what; the agent's log:" >&2
			journalctl -u shoal-agent --no-pager -n 40 >&2 || true
			exit 1
		fi
		sleep 1
	done
}

node_exists() { [ -s "$data_dir/node.json" ]; }

main() {
	install_packages
	install_binary
	load_modules

	local bootstrap=""
	if node_exists; then
		log "$data_dir holds this node already: it starts as itself (no --init, no --join)"
	else
		bootstrap=$bootstrap_args
	fi
	if write_env "$bootstrap"; then
		changed=1
	fi
	write_unit
	systemctl enable shoal-agent.service >/dev/null 2>&1
	if ! systemctl is-active --quiet shoal-agent.service; then
		log "starting shoal-agent.service"
		systemctl start shoal-agent.service
	elif [ "$changed" = 1 ]; then
		log "restarting shoal-agent.service"
		systemctl restart shoal-agent.service
	fi

	wait_for "the node to be created in $data_dir" node_exists
	# The node is made: a restart must not try to create or join again.
	write_env "" || true

	if [ "$mode" = init ]; then
		wait_for "the API to answer with the join token" env SHOAL_CONFIG="$ADMIN_CONFIG" "$BIN" token
		local line
		line=$(SHOAL_CONFIG=$ADMIN_CONFIG "$BIN" token | sed -n 2p)
		[[ $line == *"--join "*"--token "* ]] || die "'shoal token' printed no join line"
		mkdir -p "$lab_dir"
		chmod 0700 "$lab_dir"
		echo "$line" | write_if_changed "$lab_dir/join" 0600 || true
		write_if_changed "$lab_dir/config" 0600 <"$ADMIN_CONFIG" || true
		if [ -n "$user" ]; then
			local home
			home=$(getent passwd "$user" | cut -d: -f6)
			[ -n "$home" ] || die "--user $user: no such user"
			install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.shoal"
			install -m 0600 -o "$user" -g "$(id -gn "$user")" "$ADMIN_CONFIG" "$home/.shoal/config"
		fi
		log "cluster ready; join line in $lab_dir/join:"
		sed 's/^/    /' "$lab_dir/join"
	elif [ -n "$bootstrap" ]; then
		log "joined the cluster at $join"
	else
		log "a member of the cluster"
	fi
}

main
