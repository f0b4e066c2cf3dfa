// Package providers holds delegated's DNS-01 solver: Local puts challenge
// values straight into delegated's own store (and so its DNS view). The
// issuer calls it with its own context; it is not a lego
// challenge.Provider, whose methods take no context.
package providers
