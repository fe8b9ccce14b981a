// Command netprobe is a small static program the e2e tests and the
// load-balancer benchmark put into their busybox images: a UDP echo
// server, counting HTTP and UDP clients, and a name lookup through the
// pure Go resolver (which, unlike a busybox-only image's tools, applies
// resolv.conf's search path).
//
//	netprobe udp-echo PORT              answer each datagram with "HOSTNAME"
//	netprobe http-serve PORT...         answer every HTTP request with "HOSTNAME" (keep-alive)
//	netprobe http-count N URL           N GETs, a new connection each; prints {"body": count, ...}
//	netprobe udp-count N HOST:PORT      N datagrams, a new socket each; prints the same
//	netprobe lookup NAME...             prints "NAME ADDR..." per name
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "netprobe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: netprobe udp-echo PORT | http-serve PORT... | http-count N URL | udp-count N ADDR | lookup NAME...")
	}
	switch args[0] {
	case "udp-echo":
		if len(args) != 2 {
			return fmt.Errorf("udp-echo PORT")
		}
		return udpEcho(args[1])
	case "http-serve":
		if len(args) < 2 {
			return fmt.Errorf("http-serve PORT...")
		}
		host, _ := os.Hostname()
		body := []byte(host + "\n")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})
		// On SIGTERM: stop accepting, finish what is in flight, close idle
		// keep-alive connections, as a well-behaved server does.
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
		errc := make(chan error, len(args)-1)
		var servers []*http.Server
		for _, port := range args[1:] {
			srv := &http.Server{Addr: ":" + port, Handler: h}
			servers = append(servers, srv)
			go func() { errc <- srv.ListenAndServe() }()
		}
		select {
		case err := <-errc:
			return err
		case <-stop:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, srv := range servers {
			srv.Shutdown(ctx)
		}
		return nil
	case "http-count", "udp-count":
		if len(args) != 3 {
			return fmt.Errorf("%s N TARGET", args[0])
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("N: want 1-100000, got %q", args[1])
		}
		one := httpOnce
		if args[0] == "udp-count" {
			one = udpOnce
		}
		counts := map[string]int{}
		for i := 0; i < n; i++ {
			body, err := one(args[2])
			if err != nil {
				body = "error: " + err.Error()
			}
			counts[body]++
		}
		return json.NewEncoder(os.Stdout).Encode(counts)
	case "lookup":
		for _, name := range args[1:] {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, err := net.DefaultResolver.LookupHost(ctx, name)
			cancel()
			if err != nil {
				return fmt.Errorf("lookup %s: %w", name, err)
			}
			fmt.Println(name, strings.Join(addrs, " "))
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func udpEcho(port string) error {
	host, _ := os.Hostname()
	c, err := net.ListenPacket("udp", ":"+port)
	if err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo([]byte(host), from); err != nil {
			fmt.Fprintln(os.Stderr, "netprobe: reply:", err)
		}
	}
}

func httpOnce(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return strings.TrimSpace(string(b)), err
}

func udpOnce(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}
