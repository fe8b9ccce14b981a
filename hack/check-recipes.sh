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
#
# Needs ruby, shellcheck and go (apt-get install ruby shellcheck).
#   hack/check-recipes.sh [--no-docker]
# Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

docker_checks=1
case "${1:-}" in
"") ;;
--no-docker) docker_checks=0 ;;
*) echo "usage: $0 [--no-docker]" >&2 && exit 2 ;;
esac

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
cleanup() {
	if [ -n "$image" ]; then
		"${docker[@]}" rmi -f "$image" >/dev/null 2>&1 || true
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

echo
if [ ${#failures[@]} -gt 0 ]; then
	echo "check-recipes: ${#failures[@]} check(s) failed:" >&2
	printf '  %s\n' "${failures[@]%%$'\n'*}" >&2
	exit 1
fi
echo "check-recipes: all checks passed; not checked here: ${#skipped[@]} item(s) above marked skip."
echo "Not run here at all: vagrant up, lab/multipass/lab.sh up (no hypervisor on this machine)."
