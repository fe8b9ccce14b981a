package cluster

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
)

// PodIO is what a node's agent offers for the pods it runs: their logs and
// commands run in them. Logs and Exec calls reach it from any node.
type PodIO interface {
	ImportImages(ctx context.Context, r io.Reader) ([]string, error)
	Logs(ctx context.Context, pod *api.Pod, container string, previous, follow bool, tailLines int, w io.Writer) error
	Exec(ctx context.Context, pod *api.Pod, container string, cmd []string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// SetPodIO registers this node's agent; until then, Logs and Exec for its
// pods are refused.
func (c *Cluster) SetPodIO(p PodIO) {
	c.mu.Lock()
	c.podIO = p
	c.mu.Unlock()
}

func (c *Cluster) getPodIO() PodIO {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.podIO
}

// podNode finds a pod and the API of the node it is bound to ("" for this
// node).
func (s *apiServer) podNode(ctx context.Context, ns, name string) (*api.Pod, string, error) {
	obj, err := s.Get(ctx, &api.GetRequest{Kind: "Pod", Namespace: ns, Name: name})
	if err != nil {
		return nil, "", err
	}
	pod := obj.GetPod()
	node := pod.GetSpec().GetNodeName()
	if node == "" {
		return nil, "", status.Errorf(codes.FailedPrecondition, "pod %q is not bound to a node yet", name)
	}
	if node == s.c.id.Name {
		return pod, "", nil
	}
	nobj, err := s.Get(ctx, &api.GetRequest{Kind: "Node", Name: node})
	if err != nil {
		return nil, "", status.Errorf(codes.Unavailable, "pod %q runs on node %s: %v", name, node, err)
	}
	addr := nobj.GetNode().GetStatus().GetApiEndpoint()
	if addr == "" {
		return nil, "", status.Errorf(codes.Unavailable, "pod %q runs on node %s, whose API address is unknown", name, node)
	}
	if isForwarded(ctx) {
		return nil, "", status.Errorf(codes.Unavailable, "pod %q runs on node %s, not here", name, node)
	}
	return pod, addr, nil
}

// chunkWriter sends what is written as LogChunks.
type chunkWriter struct {
	send func(*api.LogChunk) error
}

func (w chunkWriter) Write(p []byte) (int, error) {
	if err := w.send(&api.LogChunk{Data: append([]byte(nil), p...)}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *apiServer) Logs(req *api.LogsRequest, stream grpc.ServerStreamingServer[api.LogChunk]) error {
	ctx := stream.Context()
	pod, addr, err := s.podNode(ctx, req.Namespace, req.Name)
	if err != nil {
		return err
	}
	if addr != "" {
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		up, err := cl.Logs(metadata.AppendToOutgoingContext(ctx, forwardedKey, s.c.id.Name), req)
		if err != nil {
			return err
		}
		for {
			chunk, err := up.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := stream.Send(chunk); err != nil {
				return err
			}
		}
	}
	pio := s.c.getPodIO()
	if pio == nil {
		return status.Error(codes.Unavailable, "this node runs no pods (agent started with --run-pods=false?)")
	}
	return pio.Logs(ctx, pod, req.Container, req.Previous, req.Follow, int(req.TailLines), chunkWriter{send: stream.Send})
}

// execStdin reads stdin from the stream's further ExecRequests.
type execStdin struct {
	stream grpc.BidiStreamingServer[api.ExecRequest, api.ExecResponse]
	buf    []byte
	done   bool
}

func (r *execStdin) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		req, err := r.stream.Recv()
		if err != nil {
			r.done = true
			return 0, io.EOF
		}
		r.buf = req.StdinData
		r.done = req.StdinClose
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

type execOut struct {
	stream grpc.BidiStreamingServer[api.ExecRequest, api.ExecResponse]
	stderr bool
}

func (w execOut) Write(p []byte) (int, error) {
	resp := &api.ExecResponse{}
	if w.stderr {
		resp.Stderr = append([]byte(nil), p...)
	} else {
		resp.Stdout = append([]byte(nil), p...)
	}
	if err := w.stream.Send(resp); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *apiServer) Exec(stream grpc.BidiStreamingServer[api.ExecRequest, api.ExecResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if len(first.Command) == 0 {
		return status.Error(codes.InvalidArgument, "exec: command required")
	}
	pod, addr, err := s.podNode(ctx, first.Namespace, first.Name)
	if err != nil {
		return err
	}
	if addr != "" {
		return s.relayExec(ctx, addr, first, stream)
	}
	pio := s.c.getPodIO()
	if pio == nil {
		return status.Error(codes.Unavailable, "this node runs no pods (agent started with --run-pods=false?)")
	}
	var stdin io.Reader
	if first.Stdin {
		stdin = &execStdin{stream: stream, buf: first.StdinData, done: first.StdinClose}
	}
	code, err := pio.Exec(ctx, pod, first.Container, first.Command, first.Tty, stdin, execOut{stream: stream}, execOut{stream: stream, stderr: true})
	if err != nil {
		return err
	}
	return stream.Send(&api.ExecResponse{Exited: true, ExitCode: int32(code)})
}

// relayExec carries an exec to the node that runs the pod.
func (s *apiServer) relayExec(ctx context.Context, addr string, first *api.ExecRequest, stream grpc.BidiStreamingServer[api.ExecRequest, api.ExecResponse]) error {
	cl, err := s.c.peers.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, err := cl.Exec(metadata.AppendToOutgoingContext(ctx, forwardedKey, s.c.id.Name))
	if err != nil {
		return err
	}
	if err := up.Send(first); err != nil {
		return err
	}
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				up.CloseSend()
				return
			}
			if err := up.Send(req); err != nil {
				return
			}
		}
	}()
	for {
		resp, err := up.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// imageReader reads the archive from the stream's chunks.
type imageReader struct {
	stream grpc.ClientStreamingServer[api.ImageChunk, api.LoadImageResponse]
	buf    []byte
	eof    bool
}

func (r *imageReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		chunk, err := r.stream.Recv()
		if err == io.EOF {
			r.eof = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		r.buf = chunk.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (s *apiServer) LoadImage(stream grpc.ClientStreamingServer[api.ImageChunk, api.LoadImageResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.Node != "" && first.Node != s.c.id.Name {
		if isForwarded(ctx) {
			return status.Errorf(codes.Unavailable, "image for node %s reached %s", first.Node, s.c.id.Name)
		}
		nobj, err := s.Get(ctx, &api.GetRequest{Kind: "Node", Name: first.Node})
		if err != nil {
			return err
		}
		addr := nobj.GetNode().GetStatus().GetApiEndpoint()
		cl, err := s.c.peers.client(addr)
		if err != nil {
			return err
		}
		up, err := cl.LoadImage(metadata.AppendToOutgoingContext(ctx, forwardedKey, s.c.id.Name))
		if err != nil {
			return err
		}
		for chunk := first; ; {
			if err := up.Send(chunk); err != nil {
				break // the node's answer says why
			}
			if chunk, err = stream.Recv(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
		resp, err := up.CloseAndRecv()
		if err != nil {
			return err
		}
		return stream.SendAndClose(resp)
	}
	pio := s.c.getPodIO()
	if pio == nil {
		return status.Error(codes.Unavailable, "this node runs no pods (agent started with --run-pods=false?)")
	}
	names, err := pio.ImportImages(ctx, &imageReader{stream: stream, buf: first.Data})
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "import image archive on %s: %v", s.c.id.Name, err)
	}
	return stream.SendAndClose(&api.LoadImageResponse{Node: s.c.id.Name, Images: names})
}
