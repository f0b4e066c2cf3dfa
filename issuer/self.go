package issuer

import (
	"context"
	"errors"
	"strings"

	"github.com/delegated/delegated/store"
)

// selfLabel is the view label that serves _acme-challenge.<zone>: the zone's
// own name validates through a name inside the zone, so delegated answers
// it itself and no CNAME is involved. The service's own API certificate
// ([api] tls = "acme") uses it.
const selfLabel = "_acme-challenge"

// isSelf reports whether base (no trailing dot, no "*.") is the zone's own
// name, whose challenge name our DNS server answers directly.
func (i *Issuer) isSelf(base string) bool {
	return base+"." == i.opts.Zone
}

// selfDelegation returns the record of a self-answered base name, creating
// its challenge account (subdomain selfLabel) when absent. Name and Target
// are the same name: selfAnswered recognises it and the check is skipped,
// since there is no CNAME to look for and our own server serves the value.
func (i *Issuer) selfDelegation(ctx context.Context, base string) (Delegation, error) {
	n, err := i.store.ChallengeNameByBase(ctx, base)
	if errors.Is(err, store.ErrNotFound) {
		n, err = i.createChallengeNameWith(ctx, base, selfLabel)
	}
	if err != nil {
		return Delegation{}, err
	}
	name := selfLabel + "." + i.opts.Zone
	if n.Subdomain != selfLabel {
		// Assigned before names of the zone were answered by the zone
		// itself: a static record in [zone] records may point there, so
		// keep it and check it as any delegation.
		i.log.Warn("the zone's own name has a challenge subdomain of its own; checking its CNAME as for any name", "base_name", base, "subdomain", n.Subdomain)
		return Delegation{BaseName: base, Name: name, Target: n.Subdomain + "." + i.opts.Zone}, nil
	}
	return Delegation{BaseName: base, Name: name, Target: name, OK: true}, nil
}

// selfAnswered reports whether d is answered by our own zone (see
// selfDelegation).
func selfAnswered(d Delegation) bool {
	return d.Name != "" && strings.EqualFold(d.Name, d.Target)
}

// PathsFor returns where the certificate called name is (or will be)
// deployed, whether or not it exists yet: the API's own certificate is
// served from there once issued.
func (i *Issuer) PathsFor(name string) Paths {
	return pathsFor(i.opts.DeployDir, name)
}

// DeployedPaths is PathsFor without an Issuer, for commands that only read
// the files (the CLI pinning the API's own certificate).
func DeployedPaths(deployDir, name string) Paths {
	return pathsFor(deployDir, name)
}
