package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"
)

const (
	// MaxDecodingBytes bounds the manifest bytes one API server reads and
	// decodes at once: decoding costs up to ~70 times the manifest's size
	// (a 3.5 MB worst case took ~244 MiB), so four 8 MiB manifests at a
	// time, a few GiB at worst, whatever the number of clients.
	MaxDecodingBytes = 4 * MaxRequestBody
	// decodeQueueWait is how long a request waits for its share before it
	// is told to come back.
	decodeQueueWait = 10 * time.Second
)

// decodeBudget hands out shares of MaxDecodingBytes to the requests that
// carry a manifest, by size, first come first served.
type decodeBudget struct {
	sem  *semaphore.Weighted
	wait time.Duration
}

func newDecodeBudget(total int64, wait time.Duration) *decodeBudget {
	return &decodeBudget{sem: semaphore.NewWeighted(total), wait: wait}
}

// acquire takes a share for a manifest of size bytes and returns its
// release. After the budget's wait it fails with 429 TooManyRequests.
func (b *decodeBudget) acquire(ctx context.Context, size int64) (func(), error) {
	size = min(max(size, 1), MaxRequestBody)
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, size); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &HTTPError{Kind: "Status", Code: http.StatusTooManyRequests, Reason: "TooManyRequests",
				Message: fmt.Sprintf("the server is decoding %d MiB of manifests already (its limit at once) and this one waited %v for its turn; retry", MaxDecodingBytes>>20, b.wait)}
		}
		return nil, err
	}
	return func() { b.sem.Release(size) }, nil
}
