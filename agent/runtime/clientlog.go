package runtime

import (
	"context"
	"io"
	"log/slog"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// containerd's client logs through logrus, by default at info level to
// stderr ("fetch failed after status: 404" on every missing image). The
// runtime gives it a logger that passes warnings and errors on to the
// agent's slog logger and drops the rest.
func clientLogger(log *slog.Logger) *clog.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.WarnLevel)
	l.AddHook(slogHook{log: log.With("component", "containerd-client")})
	return logrus.NewEntry(l)
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		level = slog.LevelError
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	h.log.Log(context.Background(), level, e.Message, attrs...)
	return nil
}

// withClientLogger puts the client logger on ctx.
func withClientLogger(ctx context.Context, e *clog.Entry) context.Context {
	return clog.WithLogger(ctx, e)
}
