package cluster

// Administrator certificates beyond the one --init writes: an administrator
// asks for a certificate for a key it made (`shoal admin-cert`), the leader
// signs it with the cluster CA. Every administrator certificate can do
// everything (there are no roles). `shoal admin-cert revoke NAME` revokes
// every certificate issued to a name until then.

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalproj/shoal/api"
	"github.com/shoalproj/shoal/cluster/storepb"
)

// maxAdminCertValidity bounds what an administrator may ask for (the CA's
// own expiry bounds it too).
const maxAdminCertValidity = 5 * 365 * 24 * time.Hour

// adminServer implements the Admin service.
type adminServer struct {
	api.UnimplementedAdminServer
	c *Cluster
}

func (s *adminServer) IssueCertificate(ctx context.Context, req *api.AdminCertificateRequest) (*api.AdminCertificateResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := pkiCheckName("admin", req.GetName()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	validity := time.Duration(req.GetValiditySeconds()) * time.Second
	switch {
	case req.GetValiditySeconds() == 0:
		validity = adminCertValidity
	case req.GetValiditySeconds() < 0 || validity > maxAdminCertValidity:
		return nil, status.Errorf(codes.InvalidArgument, "validity must be between 1 s and %v, got %d s", maxAdminCertValidity, req.GetValiditySeconds())
	}
	by, _ := callerFrom(ctx)
	var out *api.AdminCertificateResponse
	err := s.c.onLeader(ctx, "IssueAdminCertificate", func(ctx context.Context) error {
		ca, sec, err := s.c.caFromState()
		if err != nil {
			return status.Errorf(codes.Unavailable, "the cluster is still starting: %v", err)
		}
		var revokedAt time.Time
		for _, r := range sec.GetRevokedAdmins() {
			if r.GetName() == req.GetName() {
				revokedAt = time.Unix(0, r.GetRevokedUnixNano())
			}
		}
		certPEM, err := ca.SignAdmin(req.GetCsr(), req.GetName(), validity, revokedAt)
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		out = &api.AdminCertificateResponse{Certificate: certPEM, CaCertificate: sec.CaCert}
		return nil
	}, func(ctx context.Context, addr string) error {
		cc, err := s.c.peers.conn(addr)
		if err != nil {
			return err
		}
		out, err = api.NewAdminClient(cc).IssueCertificate(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !isForwarded(ctx) { // logged where the administrator called
		s.c.log.Info("admin certificate issued", "admin", req.GetName(), "by", by.Name, "validity", validity)
	}
	return out, nil
}

// RequestAdminCertificate makes a new key and asks the cluster behind cc
// (as an administrator) for a certificate for it, valid for validity (0:
// the default). The key never leaves this process.
func RequestAdminCertificate(ctx context.Context, cc grpc.ClientConnInterface, name string, validity time.Duration) (certPEM, keyPEM, caPEM []byte, err error) {
	if err := pkiCheckName("admin", name); err != nil {
		return nil, nil, nil, err
	}
	keyPEM, csrPEM, err := NewNodeKey(name, nil) // an ECDSA key and a request, as for a node
	if err != nil {
		return nil, nil, nil, err
	}
	resp, err := api.NewAdminClient(cc).IssueCertificate(ctx, &api.AdminCertificateRequest{
		Name: name, Csr: csrPEM, ValiditySeconds: int64(validity / time.Second),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	pair, err := tls.X509KeyPair(resp.GetCertificate(), keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the certificate the cluster issued does not match the key: %w", err)
	}
	if got, _, isAdmin := PeerIdentity(pair.Leaf); got != name || !isAdmin {
		return nil, nil, nil, fmt.Errorf("the cluster issued a certificate for %q (admin %v), not for admin %q", got, isAdmin, name)
	}
	return resp.GetCertificate(), keyPEM, resp.GetCaCertificate(), nil
}

// RevokeCertificates revokes every certificate issued to an administrator
// name until now.
func (s *adminServer) RevokeCertificates(ctx context.Context, req *api.AdminRevokeRequest) (*api.AdminRevokeResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := pkiCheckName("admin", req.GetName()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	by, _ := callerFrom(ctx)
	byName := by.Name
	if isForwarded(ctx) {
		byName = "an administrator through node " + by.Name
	}
	if !isForwarded(ctx) && by.IsAdmin && by.Name == req.GetName() {
		// Checked where the administrator called: forwarded, the caller
		// is the node.
		return nil, status.Errorf(codes.FailedPrecondition,
			"%q is the name of the certificate you are calling with: revoking it would lock you out; call with another administrator's certificate (`shoal admin-cert OTHER --out FILE`)", by.Name)
	}
	var out *api.AdminRevokeResponse
	err := s.c.onLeader(ctx, "RevokeAdminCertificates", func(ctx context.Context) error {
		now := time.Now()
		_, err := s.c.updateSecrets(ctx, func(next *storepb.ClusterSecrets) bool {
			kept := next.RevokedAdmins[:0:0]
			for _, r := range next.RevokedAdmins {
				if r.GetName() != req.GetName() {
					kept = append(kept, r)
				}
			}
			next.RevokedAdmins = append(kept, &storepb.RevokedAdmin{Name: req.GetName(), RevokedUnixNano: now.UnixNano(), By: byName})
			return true
		})
		if err != nil {
			return err
		}
		out = &api.AdminRevokeResponse{RevokedUnixNano: now.UnixNano()}
		return nil
	}, func(ctx context.Context, addr string) error {
		cc, err := s.c.peers.conn(addr)
		if err != nil {
			return err
		}
		out, err = api.NewAdminClient(cc).RevokeCertificates(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !isForwarded(ctx) {
		s.c.log.Warn("admin certificates revoked", "admin", req.GetName(), "by", by.Name, "issuedBefore", time.Unix(0, out.RevokedUnixNano).UTC())
	}
	return out, nil
}
