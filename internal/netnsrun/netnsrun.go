// Package netnsrun runs code inside a network namespace, on an OS thread
// of its own: what the pod network does to set up a pod, and what the
// dataplane tests do in their throwaway namespaces.
package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs fn on an OS thread of its own that has entered the network
// namespace ns, and waits for it. Sockets fn opens and processes it starts
// belong to ns. The thread is returned to the runtime only when it could be
// put back into the namespace it came from; otherwise it is discarded.
func Run(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("read the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Locked to a thread in the wrong namespace: the runtime
			// discards it when the goroutine ends.
			errc <- errors.Join(ferr, fmt.Errorf("return to the thread's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
