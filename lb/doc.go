// Package lb will hold service load balancing on a node: virtual IPs,
// endpoint selection, the nftables and userspace dataplanes, and the
// node-local DNS. Nothing is built here yet; see DESIGN.md.
package lb
