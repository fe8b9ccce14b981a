#!/usr/bin/env bash
# Checks the real-machine recipes on a machine that cannot run them (no
# hypervisor, no multipass, usually no Docker engine):
#
#   - Vagrantfile: Ruby syntax (ruby -c), then loaded against a stand-in for
#     Vagrant's configuration API: 3 machines node1..node3 of debian/bookworm64
#     on 192.168.56.11-13, bin/shoal copied in, provision.sh run with --init
#     on node1 and with the join line on the others, the join line carried
#     from node1 by a trigger.
#   - lab/multipass/cloud-init.yaml: parsed as YAML, starts with #cloud-config,
#     lists the packages the agent needs.
#   - the scripts under lab/ and this one: bash -n and shellcheck; provision.sh
#     refuses bad arguments.
#   - Dockerfile: its stages; the Go version of its build image against
#     go.mod; a static shoal (CGO_ENABLED=0) builds and runs; and, where a
#     Docker engine answers and a BuildKit builder is there, the FROM scratch
#     stage `binary` is built from that binary (no base image is pulled),
#     inspected and run. Without an engine that part is reported as skipped.
#   - lab/multipass/lab.sh and provision.sh, run for real (as root): a
#     stand-in `multipass` makes each instance a network namespace with a
#     mount namespace of its own, and stand-ins for systemctl and journalctl
#     run the unit's command line; lab.sh up forms a 3-node cluster of real
#     agents (the static binary), the host reaches it with the client
#     configuration lab.sh copied, a second `up` restarts nothing, a fourth
#     node joins with --join-file as the Vagrantfile's nodes do, and down
#     removes it all. Skipped when not root.
#
# Needs ruby, shellcheck and go (apt-get install ruby shellcheck); the
# namespace run needs iproute2 and util-linux (nsenter, unshare).
#   hack/check-recipes.sh [--no-docker] [--no-netns]
# Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

docker_checks=1 netns_checks=1
for arg in "$@"; do
	case $arg in
	--no-docker) docker_checks=0 ;;
	--no-netns) netns_checks=0 ;;
	*) echo "usage: $0 [--no-docker] [--no-netns]" >&2 && exit 2 ;;
	esac
done

failures=()
skipped=()
ok() { echo "ok    $*"; }
fail() {
	echo "FAIL  $*" >&2
	failures+=("$*")
}
skip() {
	echo "skip  $*"
	skipped+=("$*")
}

tmp=$(mktemp -d)
image=""
mp="" # the namespace lab's state directory, while it exists
cleanup() {
	if [ -n "$image" ]; then
		"${docker[@]}" rmi -f "$image" >/dev/null 2>&1 || true
	fi
	if [ -n "$mp" ]; then
		netns_teardown
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

missing=()
for tool in ruby shellcheck go; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "check-recipes: missing ${missing[*]} (Debian: apt-get install ruby shellcheck; Go from go.dev)" >&2
	exit 1
fi

# --- Vagrantfile ---------------------------------------------------------
if out=$(ruby -c Vagrantfile 2>&1); then
	ok "Vagrantfile: ruby -c"
else
	fail "Vagrantfile: ruby -c: $out"
fi

cat >"$tmp/vagrant_stub.rb" <<'RUBY'
# Loads a Vagrantfile against a recorder standing in for Vagrant's
# configuration objects, then checks what it configured.
class Rec
  attr_reader :calls
  def initialize; @calls = []; end
  def method_missing(name, *args, **kw, &blk)
    # config.vm, n.trigger...: the same object every time, as in Vagrant.
    if args.empty? && kw.empty? && !blk && (c = last(name))
      return c[3]
    end
    child = Rec.new
    @calls << [name, args, kw, child, blk]
    # Configuration blocks run, as Vagrant runs them; trigger bodies do not.
    blk.call(child) if blk && name != :ruby
    child
  end
  def respond_to_missing?(*) = true
  def all(name) = @calls.select { |c| c[0] == name }
  def last(name) = all(name).last
  def value(name) = (c = last(name)) && c[1].first
end

CONFIG = Rec.new
module Vagrant
  def self.configure(version)
    raise "Vagrant.configure(#{version.inspect}): want \"2\"" unless version == "2"
    yield CONFIG
  end
end

errors = []
check = ->(cond, msg) { errors << msg unless cond }
file = File.expand_path(ARGV[0])
args_out = ARGV[1]
root = File.dirname(file)
ARGV.replace(ARGV[2..]) # the vagrant command line the Vagrantfile sees
begin
  load file
rescue Exception => e # a Vagrantfile that raises at load is the error to report
  puts "loading #{file}: #{e.class}: #{e.message}"
  exit 1
end

vm = CONFIG.last(:vm)
check.(vm, "config.vm is never used")
exit(puts(errors) || 1) unless vm
vm = vm[3]
check.(vm.value(:box=) == "debian/bookworm64", "config.vm.box is #{vm.value(:box=).inspect}, want \"debian/bookworm64\"")
defines = vm.all(:define)
names = defines.map { |d| d[1].first.to_s }
check.(names == %w[node1 node2 node3], "machines are #{names.inspect}, want node1, node2, node3")

defines.each_with_index do |d, i|
  name = d[1].first.to_s
  n = d[3]
  nvm = n.last(:vm)&.[](3)
  unless nvm
    errors << "#{name}: no vm settings"
    next
  end
  ip = "192.168.56.1#{i + 1}"
  nets = nvm.all(:network).map { |c| [c[1].first.to_s, c[2][:ip]] }
  check.(nets.include?(["private_network", ip]), "#{name}: no private_network with ip #{ip} (#{nets.inspect})")
  check.(nvm.value(:hostname=) == name, "#{name}: hostname is #{nvm.value(:hostname=).inspect}")
  provs = nvm.all(:provision).map { |c| c[2].merge(name: c[1].first) }
  bin = provs.find { |p| p[:type] == "file" && p[:destination] == "/tmp/shoal" }
  check.(bin && File.expand_path(bin[:source], root) == File.join(root, "bin", "shoal"),
         "#{name}: bin/shoal is not copied to /tmp/shoal by a file provisioner")
  shell = provs.find { |p| p[:type] == "shell" }
  unless shell
    errors << "#{name}: no shell provisioner"
    next
  end
  check.(shell[:path] == "lab/vagrant/provision.sh", "#{name}: shell provisioner path is #{shell[:path].inspect}")
  check.(File.file?(File.join(root, shell[:path].to_s)), "#{name}: #{shell[:path]} does not exist")
  args = Array(shell[:args]).map(&:to_s)
  File.open(args_out, "a") { |f| f.puts(([name] + args).join(" ")) } unless args_out.to_s.empty?
  arg = ->(flag) { (j = args.index(flag)) && args[j + 1] }
  check.(arg.("--name") == name, "#{name}: provision.sh --name is #{arg.("--name").inspect}")
  check.(arg.("--addr") == ip, "#{name}: provision.sh --addr is #{arg.("--addr").inspect}, want #{ip}")
  check.(arg.("--binary") == "/tmp/shoal", "#{name}: provision.sh --binary is #{arg.("--binary").inspect}")
  if i.zero?
    check.(args.include?("--init"), "#{name}: provision.sh runs without --init")
    triggers = n.all(:trigger).flat_map { |t| t[3].all(:after) }
    events = triggers.flat_map { |t| Array(t[1].first) }
    check.(events.include?(:provision) && events.include?(:up),
           "#{name}: no trigger after up and provision to carry the join line (#{events.inspect})")
    check.(triggers.any? { |t| t[3].last(:ruby) }, "#{name}: the trigger runs no ruby block")
  else
    check.(!args.include?("--init"), "#{name}: provision.sh runs with --init")
    jf = arg.("--join-file")
    check.(jf, "#{name}: provision.sh runs without --join-file")
    up = provs.find { |p| p[:type] == "file" && p[:destination] == jf }
    check.(up && up[:source], "#{name}: nothing uploads the join line to #{jf.inspect}")
    order = provs.map { |p| p[:name].to_s }
    check.(up.nil? || order.index(up[:name].to_s) < order.index(shell[:name].to_s),
           "#{name}: the join line is uploaded after provision.sh runs")
  end
end
puts errors
exit(errors.empty? ? 0 : 1)
RUBY
touch "$tmp/vagrant-args"
if out=$(ruby "$tmp/vagrant_stub.rb" Vagrantfile "$tmp/vagrant-args" 2>&1); then
	ok "Vagrantfile: 3 machines, network, provisioning and join trigger as intended"
else
	fail "Vagrantfile: $out"
fi
# `vagrant up` checks bin/shoal first; tried on a copy, so that nothing is
# written under this checkout's .vagrant/.
vf=$tmp/vagrantfile
mkdir -p "$vf/bin"
cp Vagrantfile "$vf/"
ln -s "$PWD/lab" "$vf/lab"
vagrant_up() { ruby "$tmp/vagrant_stub.rb" "$vf/Vagrantfile" "" up 2>&1; }
if ! out=$(vagrant_up) && grep -q 'make build' <<<"$out"; then
	ok "Vagrantfile: vagrant up without bin/shoal stops, saying to run make build"
else
	fail "Vagrantfile: vagrant up without bin/shoal: $out"
fi
printf 'MZ not an ELF file' >"$vf/bin/shoal"
if ! out=$(vagrant_up) && grep -q 'not a Linux x86-64' <<<"$out"; then
	ok "Vagrantfile: vagrant up with a bin/shoal for another system stops, saying so"
else
	fail "Vagrantfile: vagrant up with a non-ELF bin/shoal: $out"
fi
# An ELF header for x86-64 (e_machine 0x3E at offset 18), static.
printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000' >"$vf/bin/shoal"
if out=$(vagrant_up) && [ -f "$vf/.vagrant/shoal-lab/join" ] && [ ! -s "$vf/.vagrant/shoal-lab/join" ]; then
	ok "Vagrantfile: vagrant up with a Linux x86-64 bin/shoal proceeds, with an empty join file for the file provisioner"
else
	fail "Vagrantfile: vagrant up with a Linux x86-64 bin/shoal: $out"
fi
# The arguments the Vagrantfile gives provision.sh, through its --check,
# with a join line as node1 writes it.
echo "shoal agent --join 192.168.56.11:7443 --token SHOAL-1-0123abcd-s3cr3t" >"$tmp/join"
while read -r node args; do
	# shellcheck disable=SC2086 # the arguments are words without spaces
	set -- $args
	argv=()
	for a in "$@"; do
		if [ "$a" = /tmp/shoal-join ]; then a=$tmp/join; fi
		argv+=("$a")
	done
	if [ "$node" = node1 ]; then want='--init'; else want='--join 192.168.56.11:7443 --token SHOAL-1-0123abcd-s3cr3t'; fi
	if ! out=$(bash lab/vagrant/provision.sh --check "${argv[@]}" 2>&1); then
		fail "Vagrantfile: provision.sh refuses $node's arguments: $out"
	elif ! grep -qx "SHOAL_BOOTSTRAP_ARGS=\"$want\"" <<<"$out" || ! grep -q -- "--node-name $node " <<<"$out"; then
		fail "Vagrantfile: provision.sh makes of $node's arguments:"$'\n'"$out"
	else
		ok "Vagrantfile: $node's provision.sh arguments give: shoal agent ${want%% --token*}..."
	fi
done <"$tmp/vagrant-args"

# --- cloud-init ----------------------------------------------------------
ci=lab/multipass/cloud-init.yaml
if [ "$(head -n1 "$ci")" != "#cloud-config" ]; then
	fail "$ci: the first line must be #cloud-config"
elif out=$(ruby -ryaml -e '
	doc = YAML.safe_load(File.read(ARGV[0]))
	abort "not a mapping" unless doc.is_a?(Hash)
	want = %w[containerd runc containernetworking-plugins iptables nftables]
	missing = want - Array(doc["packages"]).map(&:to_s)
	abort "packages lacks #{missing.join(", ")}" unless missing.empty?
' "$ci" 2>&1); then
	ok "$ci: YAML, #cloud-config, packages"
else
	fail "$ci: $out"
fi

# --- scripts -------------------------------------------------------------
mapfile -t scripts < <(find lab -name '*.sh' -type f | sort)
scripts+=(hack/check-recipes.sh)
for s in "${scripts[@]}"; do
	if ! out=$(bash -n "$s" 2>&1); then
		fail "$s: bash -n: $out"
	elif ! out=$(shellcheck "$s" 2>&1); then
		fail "$s: shellcheck:"$'\n'"$out"
	else
		ok "$s: bash -n, shellcheck"
	fi
done
for s in lab/vagrant/provision.sh lab/multipass/lab.sh; do
	[ -x "$s" ] || fail "$s: not executable"
done
# provision.sh refuses what it cannot do; --check stops before anything
# is changed, whatever the arguments.
prov=lab/vagrant/provision.sh
bad=(
	"--init"
	"--check --join 10.0.0.1:7443 --name n --addr 10.0.0.2"
	"--check --join-file /nonexistent --name n --addr 10.0.0.2"
	"--check --init --join 10.0.0.1:7443 --token T --name n --addr 10.0.0.2"
	"--check --init --name n --addr 10.0.0.2 --timeout x"
	"--check --init --name n --addr not-an-ip"
)
accepted=()
for b in "${bad[@]}"; do
	# shellcheck disable=SC2086
	if bash "$prov" $b >/dev/null 2>&1; then accepted+=("$b"); fi
done
if [ ${#accepted[@]} -gt 0 ]; then
	fail "$prov: accepted ${accepted[*]}"
elif ! out=$(bash "$prov" --check --join 10.0.0.1:7443 --token SHOAL-1-ab-cd --name shoal-2 --addr 10.0.0.2 --binary /tmp/shoal 2>&1) ||
	! grep -qx 'SHOAL_BOOTSTRAP_ARGS="--join 10.0.0.1:7443 --token SHOAL-1-ab-cd"' <<<"$out"; then
	fail "$prov: lab.sh's join arguments: $out"
else
	ok "$prov: refuses bad arguments; takes lab.sh's"
fi

# --- Dockerfile ----------------------------------------------------------
df=Dockerfile
stages=$(sed -n 's/^FROM .* AS \([a-z-]*\)$/\1/p' "$df" | tr '\n' ' ')
if [ "$stages" != "build prebuilt source binary agent " ]; then
	fail "$df: stages are '$stages', want 'build prebuilt source binary agent' (agent last: the default target)"
else
	ok "$df: stages build, prebuilt, source, binary, agent"
fi
go_mod=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' go.mod)
go_image=$(sed -n 's/^ARG GO_IMAGE=golang:\([0-9]*\.[0-9]*\).*/\1/p' "$df")
if [ -n "$go_mod" ] && [ "$go_mod" = "$go_image" ]; then
	ok "$df: golang:$go_image builds go.mod's go $go_mod"
else
	fail "$df: the build image's Go ($go_image) is not go.mod's ($go_mod)"
fi
for p in containernetworking-plugins iptables ca-certificates; do
	grep -q "$p" "$df" || fail "$df: the agent stage does not install $p"
done

ctx=$tmp/ctx
mkdir -p "$ctx"
version=check-$(date +%s)
if ! out=$(CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$ctx/shoal" ./cmd/shoal 2>&1); then
	fail "static build (CGO_ENABLED=0 go build ./cmd/shoal): $out"
elif ! go version -m "$ctx/shoal" | grep -q 'CGO_ENABLED=0'; then
	fail "static build: $ctx/shoal was not built with CGO_ENABLED=0"
elif ! "$ctx/shoal" version 2>/dev/null | grep -q "Client Version: $version"; then
	fail "static build: '$ctx/shoal version' does not print its version"
else
	ok "static build: CGO_ENABLED=0 shoal builds and runs ($(du -h "$ctx/shoal" | cut -f1))"
fi

docker=()
if [ "$docker_checks" = 0 ]; then
	skip "docker build of the binary stage (--no-docker)"
elif ! command -v docker >/dev/null; then
	skip "docker build of the binary stage: no docker command"
elif ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
	skip "docker build of the binary stage: no Docker engine answers"
elif [ ! -x "$ctx/shoal" ]; then
	skip "docker build of the binary stage: no static binary"
else
	# A builder that builds only the stages the target needs (BuildKit): the
	# classic builder builds every stage before it, pulling the golang image.
	if docker buildx version >/dev/null 2>&1; then
		docker=(docker)
		build=(docker buildx build --load)
		builder="docker buildx"
	else
		while read -r cli; do
			v=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null || true)
			if [[ $v =~ ^(1[0-9]|2[0-2])\. ]]; then # these CLIs have BuildKit built in
				docker=("$cli")
				build=(env DOCKER_BUILDKIT=1 "$cli" build)
				builder="DOCKER_BUILDKIT=1 $cli $v"
				break
			fi
		done < <(type -ap docker)
	fi
	if [ ${#docker[@]} -eq 0 ]; then
		skip "docker build of the binary stage: no BuildKit builder (install docker-buildx)"
	else
		image=shoal-check-recipes:$version
		if ! out=$("${build[@]}" --progress plain --target binary --build-arg BINARY_FROM=prebuilt \
			-t "$image" -f "$PWD/$df" "$ctx" 2>&1); then
			fail "docker build --target binary:"$'\n'"$(tail -n 20 <<<"$out")"
		elif [ "$("${docker[@]}" image inspect -f '{{json .Config.Entrypoint}}' "$image")" != '["/shoal"]' ]; then
			fail "docker build --target binary: the entrypoint is not /shoal"
		elif ! out=$("${docker[@]}" run --rm --network none "$image" version 2>&1) ||
			! grep -q "Client Version: $version" <<<"$out"; then
			fail "docker run $image version: $out"
		else
			size=$("${docker[@]}" image inspect -f '{{.Size}}' "$image")
			ok "docker build --target binary (FROM scratch, $builder): $image runs; $((size / 1000000)) MB"
		fi
	fi
fi
skip "docker build of the agent stage and of the golang build stage: they pull base images"

# --- lab.sh and provision.sh in network namespaces -------------------------
MP_NET=10.77.77   # the instances' subnet; the host is .1, shoalck-N is .1N
MP_BR=shoalckbr0

# The stand-ins. `multipass` keeps each instance as a network namespace
# (mpck-NAME) on bridge $MP_BR and a mount namespace (STATE/NAME.mnt) with
# tmpfs over what provision.sh writes, so nothing on this machine changes.
write_fakes() {
	mkdir -p "$mp/bin" "$mp/stubs"
	cat >"$mp/bin/multipass" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
S=$MP_STATE
idx() { echo "${1##*-}"; }
exists() { [ -e "$S/$1.mnt" ]; }
in_host() {
	local n=$1
	shift
	nsenter --mount="$S/$n.mnt" --net="/run/netns/mpck-$n" \
		env MP_HOST="$n" MP_STATE="$S" PATH="$S/stubs:$PATH" HOME=/root "$@"
}
cmd=$1
shift
case $cmd in
launch)
	name=""
	while [ $# -gt 0 ]; do
		case $1 in
		--name) name=$2 && shift ;;
		--cloud-init) if [ "$2" = - ]; then cat >/dev/null; fi && shift ;;
		--cpus | --memory | --disk | --timeout) shift ;;
		esac
		shift
	done
	i=$(idx "$name") n=mpck-$name
	if ! ip link show "$MP_BR" >/dev/null 2>&1; then
		ip link add "$MP_BR" type bridge
		ip addr add "$MP_NET.1/24" dev "$MP_BR"
		ip link set "$MP_BR" up
	fi
	ip netns add "$n"
	ip link add "shoalckv$i" type veth peer name eth0 netns "$n"
	ip link set "shoalckv$i" master "$MP_BR" up
	ip -n "$n" addr add "$MP_NET.1$i/24" dev eth0
	ip -n "$n" link set eth0 up
	ip -n "$n" link set lo up
	ip -n "$n" route add default via "$MP_NET.1"
	{ cat /etc/passwd; echo "ubuntu:x:64999:64999::/home/ubuntu:/bin/sh"; } >"$S/$name.passwd"
	{ cat /etc/group; echo "ubuntu:x:64999:"; } >"$S/$name.group"
	touch "$S/$name.mnt"
	unshare --mount="$S/$name.mnt" --propagation private sh -ec "
		for d in /tmp /etc/systemd/system /etc/default /etc/modules-load.d /usr/local/bin /var/lib /root /home; do
			mkdir -p \$d && mount -t tmpfs none \$d
		done
		mount --bind $S/$name.passwd /etc/passwd
		mount --bind $S/$name.group /etc/group
		mkdir /home/ubuntu && chown 64999:64999 /home/ubuntu"
	;;
info)
	exists "$1" || { echo "instance \"$1\" does not exist" >&2; exit 2; }
	printf 'Name:           %s\nState:          Running\nIPv4:           %s.1%s\n' "$1" "$MP_NET" "$(idx "$1")"
	;;
start) ;;
exec)
	n=$1
	shift
	[ "$1" = -- ] && shift
	in_host "$n" "$@"
	;;
transfer)
	n=${2%%:*} path=${2#*:}
	if [ "$1" = - ]; then
		in_host "$n" sh -c 'cat >"$1"' - "$path"
	else
		in_host "$n" sh -c 'cat >"$1"' - "$path" <"$1"
	fi
	;;
delete)
	for n in "$@"; do
		[ "$n" != --purge ] && exists "$n" || continue
		if [ -e "$S/$n.agent.pid" ]; then
			kill "$(cat "$S/$n.agent.pid")" 2>/dev/null || true
		fi
		umount "$S/$n.mnt"
		rm -f "$S/$n.mnt" "$S/$n.passwd" "$S/$n.group"
		ip netns del "mpck-$n"
	done
	;;
*) echo "stand-in multipass: no $cmd" >&2 && exit 1 ;;
esac
EOF
	cat >"$mp/stubs/systemctl" <<'EOF'
#!/usr/bin/env bash
# Runs shoal-agent.service's command line in the calling instance.
set -euo pipefail
pidf=$MP_STATE/$MP_HOST.agent.pid
echo "$*" >>"$MP_STATE/$MP_HOST.systemctl"
alive() { [ -e "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
stop() {
	if alive; then
		kill "$(cat "$pidf")"
		for _ in $(seq 100); do alive || break; sleep 0.1; done
	fi
}
start() {
	eval "$(sed -n 's/^\(SHOAL_[A-Z_]*=".*"\)$/\1/p' /etc/default/shoal-agent)"
	exec_start=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/shoal-agent.service)
	[ "$exec_start" = '/usr/local/bin/shoal agent $SHOAL_AGENT_ARGS $SHOAL_BOOTSTRAP_ARGS' ]
	# shellcheck disable=SC2086
	SHOAL_CONFIG=/root/.shoal/config setsid /usr/local/bin/shoal agent $SHOAL_AGENT_ARGS $SHOAL_BOOTSTRAP_ARGS \
		>>"$MP_STATE/$MP_HOST.log" 2>&1 </dev/null &
	echo $! >"$pidf"
}
case $1 in
daemon-reload | enable) ;;
is-active) alive ;;
start) alive || start ;;
restart) stop && start ;;
*) echo "stand-in systemctl: $*" >&2 && exit 1 ;;
esac
EOF
	printf '#!/bin/sh\nexec "$@"\n' >"$mp/stubs/sudo"
	printf '#!/bin/sh\necho "status: done"\n' >"$mp/stubs/cloud-init"
	cat >"$mp/stubs/journalctl" <<'EOF'
#!/bin/sh
tail -n 40 "$MP_STATE/$MP_HOST.log"
EOF
	chmod +x "$mp/bin/multipass" "$mp/stubs/"*
}

netns_teardown() {
	local f
	for f in "$mp"/*.agent.pid; do
		if [ -e "$f" ]; then
			kill "$(cat "$f")" 2>/dev/null || true
		fi
	done
	for f in "$mp"/*.mnt; do
		[ -e "$f" ] || continue
		umount "$f" 2>/dev/null || true
		f=${f##*/}
		ip netns del "mpck-${f%.mnt}" 2>/dev/null || true
	done
	ip link del "$MP_BR" 2>/dev/null || true
	umount "$mp" 2>/dev/null || true
	rm -rf "$mp"
	mp=""
}

netns_check() {
	# State outside the instances' tmpfs (/tmp), on a private mount, where
	# mount namespaces can be kept as files.
	mp=/run/shoal-check-recipes.$$
	mkdir -p "$mp"
	mount --bind "$mp" "$mp"
	mount --make-private "$mp"
	write_fakes
	local env=(env PATH="$mp/bin:$PATH" MP_STATE="$mp" MP_NET="$MP_NET" MP_BR="$MP_BR"
		SHOAL_LAB_PREFIX=shoalck SHOAL_BIN="$ctx/shoal" SHOAL_LAB_CONFIG="$mp/client.config")
	local out ls n
	if ! out=$("${env[@]}" timeout 300 bash lab/multipass/lab.sh up 2>&1); then
		fail "lab.sh up (namespaces):"$'\n'"$(tail -n 30 <<<"$out")"
		return
	fi
	ls=$(SHOAL_CONFIG=$mp/client.config "$ctx/shoal" node ls 2>&1 || true)
	if [ "$(grep -c ' Ready ' <<<"$ls")" != 3 ]; then
		fail "lab.sh up (namespaces): the host does not see 3 Ready nodes with the copied configuration:"$'\n'"$ls"
		return
	fi
	for n in 1 2 3; do
		if ! "${env[@]}" multipass exec "shoalck-$n" -- grep -qx 'SHOAL_BOOTSTRAP_ARGS=""' /etc/default/shoal-agent; then
			fail "provision.sh (namespaces): shoalck-$n keeps its --init/--join arguments after the first start"
		fi
	done
	ok "lab.sh up (namespaces): 3 agents provisioned by provision.sh form a cluster; the host reaches it"
	rm -f "$mp"/*.systemctl
	if ! out=$("${env[@]}" timeout 300 bash lab/multipass/lab.sh up 2>&1); then
		fail "lab.sh up, again (namespaces):"$'\n'"$(tail -n 30 <<<"$out")"
	elif cat "$mp"/*.systemctl | grep -qE '^(start|restart)'; then
		fail "lab.sh up, again (namespaces): agents were (re)started: $(cat "$mp"/*.systemctl | tr '\n' ' ')"
	else
		ok "lab.sh up, again (namespaces): nothing restarted, nothing created twice"
	fi
	# A node as the Vagrantfile's node2 and node3 are: --join-file.
	# shellcheck disable=SC2016 # expanded by the inner shell
	if ! out=$("${env[@]}" sh -c '
			multipass launch --name shoalck-4 &&
			multipass exec shoalck-1 -- cat /var/lib/shoal-lab/join >"$MP_STATE/join" &&
			multipass transfer "$MP_STATE/join" shoalck-4:/tmp/shoal-join &&
			multipass transfer "$1" shoalck-4:/tmp/shoal &&
			multipass transfer lab/vagrant/provision.sh shoalck-4:/tmp/provision.sh &&
			multipass exec shoalck-4 -- bash /tmp/provision.sh --join-file /tmp/shoal-join \
				--name shoalck-4 --addr "$MP_NET.14" --binary /tmp/shoal --timeout 60' - "$ctx/shoal" 2>&1); then
		fail "provision.sh --join-file (namespaces):"$'\n'"$(tail -n 20 <<<"$out")"
	else
		local deadline=$((SECONDS + 30))
		until [ "$(SHOAL_CONFIG=$mp/client.config "$ctx/shoal" node ls 2>/dev/null | grep -c ' Ready ')" = 4 ]; do
			if [ $SECONDS -ge $deadline ]; then
				fail "provision.sh --join-file (namespaces): the fourth node is not Ready"
				break
			fi
			sleep 1
		done
		[ $SECONDS -ge $deadline ] || ok "provision.sh --join-file (namespaces): a fourth node joins"
	fi
	if ! out=$("${env[@]}" SHOAL_LAB_NODES=4 bash lab/multipass/lab.sh down 2>&1); then
		fail "lab.sh down (namespaces): $out"
	elif compgen -G "$mp/*.mnt" >/dev/null || [ -e "$mp/client.config" ]; then
		fail "lab.sh down (namespaces): instances or the client configuration remain"
	else
		ok "lab.sh down (namespaces): instances and client configuration removed"
	fi
	netns_teardown
}

if [ "$netns_checks" = 0 ]; then
	skip "lab.sh and provision.sh in network namespaces (--no-netns)"
elif [ "$(id -u)" != 0 ]; then
	skip "lab.sh and provision.sh in network namespaces: needs root"
elif ! command -v nsenter >/dev/null || ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
	skip "lab.sh and provision.sh in network namespaces: needs nsenter, unshare (util-linux) and ip (iproute2)"
elif [ ! -x "$ctx/shoal" ]; then
	skip "lab.sh and provision.sh in network namespaces: no static binary"
else
	netns_check
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
	echo "check-recipes: ${#failures[@]} check(s) failed:" >&2
	printf '  %s\n' "${failures[@]%%$'\n'*}" >&2
	exit 1
fi
echo "check-recipes: all checks passed; not checked here: ${#skipped[@]} item(s) above marked skip."
echo "Not run here: vagrant up, and lab/multipass/lab.sh up with the real multipass (no hypervisor)."
