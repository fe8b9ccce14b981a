#!/usr/bin/env bash
# Installs the Debian packages shoal's tests and benchmarks use, when they
# are missing. Needs root for apt-get; does nothing when all are present.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v busybox >/dev/null || need+=(busybox-static)
command -v ping >/dev/null || need+=(iputils-ping)
command -v ruby >/dev/null || need+=(ruby)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v nsenter >/dev/null || need+=(util-linux)
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "missing packages: ${need[*]} (run as root to install them)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ "${SHOAL_APT_UPDATED:-}" != 1 ]; then
	apt-get update -qq
fi
apt-get install -y -qq "${need[@]}" >/dev/null
