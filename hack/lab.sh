#!/usr/bin/env bash
# The README's quick start: a 3-host lab cluster on this machine (network
# namespaces shoal-lab-1..3, each with its own agent and containerd), the
# example Deployment and Service applied, each of its pods answering, and
# the Service's virtual IP answering on every host.
# `hack/lab.sh down` (or `bin/shoal lab down`) removes every trace.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/shoal
export SHOAL_CONFIG=$HOME/.shoal/lab.config

if [ "${1:-up}" = down ]; then
	exec "$BIN" lab down
fi

"$BIN" lab up --nodes 3
echo
echo "+ shoal node ls"
"$BIN" node ls
echo
echo "+ shoal apply -f examples/web.yaml"
"$BIN" apply -f examples/web.yaml
"$BIN" rollout status deploy/web --timeout 120s
echo
echo "+ shoal get pods -o wide"
"$BIN" get pods -o wide
echo
echo "+ shoal get endpoints web"
"$BIN" get endpoints web
# Each pod answers from this machine's namespace (the lab routes each
# host's pod subnet through the host).
for ip in $("$BIN" get pods -l app=web -o wide | awk 'NR > 1 { print $6 }'); do
	printf '+ wget -qO- http://%s:8080/   ' "$ip"
	busybox wget -qO- "http://$ip:8080/"
done
echo
echo "+ shoal get svc web"
"$BIN" get svc web
# The Service's virtual IP answers on every host, balanced over the pods
# on all of them (nftables in each host's namespace).
vip=$("$BIN" get svc web | awk 'NR == 2 { print $3 }')
for host in 1 2 3; do
	for _ in 1 2 3; do
		printf '+ (on shoal-lab-%s) wget -qO- http://%s/   ' "$host" "$vip"
		nsenter --net=/run/netns/shoal-lab-$host busybox wget -qO- "http://$vip/"
	done
done
echo
echo "The lab stays up: export SHOAL_CONFIG=~/.shoal/lab.config and use bin/shoal."
echo "Remove it with: make lab-down"
