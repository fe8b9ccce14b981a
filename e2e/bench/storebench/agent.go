package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // the reason this mode exists
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/shoalproj/shoal/agent"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/cluster"
)

// agentSubcommand makes this program run one shoal agent in-process, the way
// `shoal agent` does, with net/http/pprof on --pprof-addr. -profile starts
// the cluster's nodes this way, so that profiles come from the same code
// the benchmark measures without a change to cmd/shoal.
const agentSubcommand = "__agent"

func agentMain(args []string) int {
	var (
		cfg       cluster.Config
		logLevel  string
		pprofAddr string
		blockRate int
		mutexFrac int
	)
	fs := flag.NewFlagSet("storebench "+agentSubcommand, flag.ContinueOnError)
	fs.BoolVar(&cfg.Init, "init", false, "create a new cluster")
	fs.StringVar(&cfg.Join, "join", "", "join the cluster at HOST:PORT")
	fs.StringVar(&cfg.Token, "token", "", "join token")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "advertised IP")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "data directory")
	fs.StringVar(&cfg.NodeName, "node-name", "", "node name")
	fs.IntVar(&cfg.APIPort, "api-port", cluster.DefaultAPIPort, "API port")
	fs.IntVar(&cfg.GossipPort, "gossip-port", cluster.DefaultGossipPort, "gossip port")
	fs.IntVar(&cfg.RaftPort, "raft-port", cluster.DefaultRaftPort, "raft port")
	fs.StringVar(&logLevel, "log-level", "info", "log level")
	fs.StringVar(&pprofAddr, "pprof-addr", "", "serve net/http/pprof here")
	fs.IntVar(&blockRate, "block-profile-rate", 0, "runtime.SetBlockProfileRate")
	fs.IntVar(&mutexFrac, "mutex-profile-fraction", 0, "runtime.SetMutexProfileFraction")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "--log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	runtime.SetBlockProfileRate(blockRate)
	runtime.SetMutexProfileFraction(mutexFrac)
	if pprofAddr != "" {
		srv := &http.Server{Addr: pprofAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				log.Error("pprof server", "err", err)
			}
		}()
		defer srv.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Version = "storebench-inprocess"
	err := agent.Run(ctx, agent.Config{
		Cluster:          cfg,
		ClientConfigPath: client.DefaultConfigPath(),
		// The benchmark writes Services on loopback in the machine's own
		// network namespace: no virtual IPs there.
		Services: agent.ServicesConfig{Mode: agent.LBModeNone},
		Logger:   log,
		OnInit: func(joinLine string) {
			fmt.Printf("Cluster created. To add a node, run on it:\n\n    %s\n\n", joinLine)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// fetchProfile saves one profile from a node's pprof endpoint (CPU for d,
// when kind is "profile").
func fetchProfile(ctx context.Context, addr, kind string, d time.Duration, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/%s", addr, kind)
	if kind == "profile" || kind == "trace" || kind == "allocs" {
		// allocs with seconds: the allocations made during them (a delta).
		url += fmt.Sprintf("?seconds=%d", max(1, int(d.Seconds())))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
