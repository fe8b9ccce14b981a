# shoal as a container image.
#
# Build (needs BuildKit: Docker 23+ with buildx, or DOCKER_BUILDKIT=1 with
# Docker 20.10's own CLI):
#
#   make image                                 # shoal:$(VERSION), the agent image below
#   docker build --build-arg VERSION=v0.1.0 -t shoal:v0.1.0 .
#   docker build --target binary -t shoal:bin .            # only the static binary, FROM scratch
#   docker build --target binary --output type=local,dest=out .   # write it to ./out/shoal
#
# A binary built on the host instead of in the golang image (it must be
# static: CGO_ENABLED=0), taken from a context that holds a file `shoal`:
#
#   CGO_ENABLED=0 go build -trimpath -o /tmp/ctx/shoal ./cmd/shoal
#   docker build --build-arg BINARY_FROM=prebuilt -f Dockerfile -t shoal:dev /tmp/ctx
#
# Stages:
#   build     golang image; compiles a static binary (CGO_ENABLED=0) to /out/shoal
#   prebuilt  takes `shoal` from the build context instead (BINARY_FROM=prebuilt)
#   binary    FROM scratch, /shoal alone: for `--output`, and for the client
#             commands: docker run --rm --network host
#               -v ~/.shoal:/root/.shoal:ro shoal:bin node ls
#   agent     (the default) Debian slim with what the agent executes on its
#             node: the CNI plugins (bridge, host-local, portmap, loopback)
#             and iptables, which the portmap plugin runs. A FROM scratch image
#             cannot run pods: the plugins could be mounted from the host, but
#             iptables is a dynamically linked program with its libraries, so
#             the agent stage carries them instead.
#
# Run the agent from the image. It is the node's agent, not an isolated
# application, so it shares the host's network, PIDs and the mounts it works
# with, and it uses the host's containerd (apt-get install containerd runc):
#
#   modprobe br_netfilter            # on the host; the image has no modprobe
#   docker run -d --name shoal --restart unless-stopped \
#     --privileged --network host --pid host \
#     -v /var/lib/shoal:/var/lib/shoal \
#     -v /run/containerd:/run/containerd \
#     -v /var/lib/containerd:/var/lib/containerd \
#     -v /run/netns:/run/netns:rshared \
#     -v /root/.shoal:/root/.shoal \
#     shoal:VERSION agent --init --advertise-addr 192.168.56.11 --node-name node1
#
# and on the other machines the same with
#     shoal:VERSION agent --join 192.168.56.11:7443 --token SHOAL-1-... --advertise-addr ... --node-name ...
#
#   --privileged        nftables and routes over netlink, network namespaces
#                       (mount, setns), sysctls under /proc/sys. Where the
#                       host's capability bounding set lacks one (docker then
#                       fails with "unable to apply caps"), use instead:
#                       --cap-add ALL --cap-drop <the missing one>
#                       --security-opt seccomp=unconfined
#                       --security-opt apparmor=unconfined
#                       --security-opt systempaths=unconfined
#   --network host      the API, gossip and raft ports on the advertise
#                       address; pod bridge, routes and nftables in the host
#   --pid host          process IDs containerd reports mean the same here
#   /var/lib/shoal      the node's state; at the same path as on the host,
#                       because the host's containerd opens pods' log files
#                       and emptyDir volumes by the paths the agent gives it
#   /run/containerd     containerd's socket, and the FIFOs of `shoal exec`
#                       (/run/containerd/fifo) that containerd's shims open:
#                       without it exec fails ("opening file .../fifo/...")
#   /var/lib/containerd containerd's root, at the same path: the agent reads
#                       the image's configuration (users) from its snapshot,
#                       which it mounts from there; without it containers fail
#                       with CreateContainerError ("open .../snapshots/N/fs")
#   /run/netns:rshared  the pods' network namespaces, bind-mounted by the agent
#                       and joined by the host's containerd: the mounts must
#                       propagate back to the host, so /run/netns (or a mount
#                       above it) must be shared on the host; it is where
#                       systemd is PID 1, else: mkdir -p /run/netns &&
#                       mount --bind /run/netns /run/netns && mount --make-shared /run/netns
#   /root/.shoal        where --init writes the admin client configuration
#                       (or: docker exec shoal shoal token; docker cp)
#
# `docker start` or a restart policy re-runs the same arguments: a data
# directory that already holds a node ignores --init and --join (with a
# warning) and restarts as that node.
# If nothing answers at --containerd-socket the agent would start its own
# containerd; the image has none, so install the host's containerd package.
# /sys/fs/cgroup needs no mount (privileged containers see it). The image's
# iptables uses the nf_tables backend, as Debian 12's does; on a host whose
# own rules use iptables-legacy, portmap's rules land in the other backend.

ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
# The stage the binary comes from: build (compile here) or prebuilt.
ARG BINARY_FROM=build

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/shoal ./cmd/shoal

FROM scratch AS prebuilt
COPY shoal /out/shoal

FROM ${BINARY_FROM} AS source

FROM scratch AS binary
COPY --from=source /out/shoal /shoal
ENV SHOAL_CONFIG=/root/.shoal/config
ENTRYPOINT ["/shoal"]
CMD ["--help"]

FROM ${BASE_IMAGE} AS agent
# containernetworking-plugins installs to /usr/lib/cni, where the agent looks;
# only the four plugins the agent's network configuration uses are kept
# (agent/podnet: requiredPlugins), about 35 MB fewer.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates containernetworking-plugins iptables nftables iproute2 \
 && find /usr/lib/cni -type f ! -name bridge ! -name host-local ! -name portmap ! -name loopback -delete \
 && rm -rf /var/lib/apt/lists/*
COPY --from=source /out/shoal /usr/local/bin/shoal
ENV SHOAL_CONFIG=/root/.shoal/config
ENTRYPOINT ["/usr/local/bin/shoal"]
CMD ["agent"]
