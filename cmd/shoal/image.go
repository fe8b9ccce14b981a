package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/api"
)

func newImageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the images on the cluster's nodes"}
	var node string
	load := &cobra.Command{
		Use:   "load FILE",
		Short: "Import an image archive (OCI layout or docker save) onto every Ready node, or one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, done, err := g.grpcClient(cmd)
			if err != nil {
				return err
			}
			defer done()
			nodes := []string{node}
			if node == "" {
				list, err := cl.List(cmd.Context(), &api.ListRequest{Kind: "Node"})
				if err != nil {
					return grpcError(err)
				}
				nodes = nil
				for _, o := range list.Items {
					for _, c := range o.GetNode().GetStatus().GetConditions() {
						if c.Type == "Ready" && c.Status == "True" {
							nodes = append(nodes, o.GetNode().GetMetadata().GetName())
						}
					}
				}
				if len(nodes) == 0 {
					return errors.New("no Ready node")
				}
			}
			failed := false
			for _, n := range nodes {
				images, err := loadImage(cmd, cl, n, args[0])
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", n, err)
					failed = true
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: loaded %s\n", n, strings.Join(images, ", "))
			}
			if failed {
				return errReported
			}
			return nil
		},
	}
	load.Flags().StringVar(&node, "node", "", "load onto this node only")
	cmd.AddCommand(load)
	return cmd
}

// loadImage streams the archive to one node through the API.
func loadImage(cmd *cobra.Command, cl api.ShoalClient, node, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stream, err := cl.LoadImage(cmd.Context())
	if err != nil {
		return nil, grpcError(err)
	}
	buf := make([]byte, 256<<10)
	first := true
	for {
		n, rerr := f.Read(buf)
		if n > 0 || first {
			chunk := &api.ImageChunk{Data: append([]byte(nil), buf[:n]...)}
			if first {
				chunk.Node = node
				first = false
			}
			if err := stream.Send(chunk); err != nil {
				break // the answer says why
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, grpcError(err)
	}
	return resp.Images, nil
}
