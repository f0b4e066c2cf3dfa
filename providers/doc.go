// Package providers holds lego DNS-01 challenge providers: Local puts values
// straight into delegated's own store (and so its DNS view), ACMEDNS talks to
// a remote acme-dns-compatible server for operators who keep DNS elsewhere.
//
// lego's challenge.Provider methods take no context, so each provider bounds
// its own work with a deadline (Options.Timeout); the ...Context methods are
// what delegated's issuer calls with its own context.
package providers
