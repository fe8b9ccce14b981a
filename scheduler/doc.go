// Package scheduler will hold placement (pure functions: filter nodes, score
// them, pick) and the controllers only the leader runs: deployments, node
// lifecycle, endpoints. Nothing is built here yet; see DESIGN.md.
package scheduler
