package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/api/client"
	"github.com/shoalproj/shoal/cluster"
)

func newAdminCertCommand(g *globals) *cobra.Command {
	var (
		out      string
		validity time.Duration
	)
	cmd := &cobra.Command{
		Use:   "admin-cert NAME --out FILE",
		Short: "Issue an administrator certificate and write a client configuration with it",
		Long: `Issue a new administrator certificate, signed by the cluster CA, and write a
client configuration with it (and the servers of the current one) to FILE,
readable by its owner only. The key is made here and never sent.

The certificate --init writes is valid for 365 days; replace it before then
(--out ~/.shoal/config), or give each administrator a certificate of their
own. Every administrator certificate can do everything: there are no roles.
'shoal admin-cert revoke NAME' revokes every certificate issued to NAME so far.`,
		Example: `  shoal admin-cert admin --out ~/.shoal/config          # renew your own
  shoal admin-cert alice --out alice.config --validity 720h
  shoal admin-cert revoke alice                           # alice's certificates stop working`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out FILE is required: where to write the new client configuration")
			}
			cfg, cc, err := g.grpcConn(cmd)
			if err != nil {
				return err
			}
			defer cc.Close()
			certPEM, keyPEM, caPEM, err := cluster.RequestAdminCertificate(cmd.Context(), cc, args[0], validity)
			if err != nil {
				return grpcError(err)
			}
			next := &client.Config{Server: cfg.Server, Servers: cfg.Servers, CA: string(caPEM), Cert: string(certPEM), Key: string(keyPEM)}
			if next.CA == "" {
				next.CA = cfg.CA
			}
			if err := next.Save(out); err != nil {
				return err
			}
			expires := "?"
			if block, _ := pem.Decode(certPEM); block != nil {
				if c, err := x509.ParseCertificate(block.Bytes); err == nil {
					expires = c.NotAfter.UTC().Format(time.RFC3339)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote a client configuration for admin %q to %s (valid until %s).\n", args[0], out, expires)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "the client configuration file to write (replaced if it exists)")
	f.DurationVar(&validity, "validity", 0, "how long the certificate is valid (default 365 days, at most 5 years)")
	cmd.AddCommand(newAdminCertRevokeCommand(g))
	return cmd
}

func newAdminCertRevokeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke every certificate issued to an administrator so far",
		Long: `Revoke every administrator certificate issued to NAME until now: every node
refuses them from the moment the revocation is committed, on new connections
and on the next call of open ones. A certificate issued to NAME afterwards
works. You cannot revoke the name you are calling with.`,
		Example: `  shoal admin-cert revoke alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cc, err := g.grpcConn(cmd)
			if err != nil {
				return err
			}
			defer cc.Close()
			resp, err := api.NewAdminClient(cc).RevokeCertificates(cmd.Context(), &api.AdminRevokeRequest{Name: args[0]})
			if err != nil {
				return grpcError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked the certificates of admin %q issued before %s.\n", args[0],
				time.Unix(0, resp.GetRevokedUnixNano()).UTC().Format(time.RFC3339))
			return nil
		},
	}
}
