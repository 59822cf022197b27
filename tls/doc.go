// Package tls chooses and checks the certificates Postern serves.
//
// It sits between the routing table and the proxy's TLS listener. The
// controller calls ParseKeyPair when it builds a table, so every
// route.Certificate in a published table has already been checked (the
// chain parses, the key matches, the leaf is valid now). The proxy hands
// Store.ServerConfig to its TLS listener: Store.GetCertificate picks a
// certificate per handshake by SNI from the live table, falling back to the
// default certificate (a Secret named on the command line, or SelfSigned),
// and asks the ACME issuer for hosts whose certificate comes from ACME.
// Store.Covers tells the proxy whether a request's Host is served by the
// certificate its connection negotiated (RFC 9110 §7.4, 421 Misdirected
// Request).
//
// ACME wraps golang.org/x/crypto/acme/autocert. It orders certificates only
// for hosts the live table marks as ACME, only while CanOrder reports true
// (the elected leader in cluster mode), and shares state with the other
// replicas through an autocert.Cache.
//
// The package imports crypto/tls as stdtls, since its own name is tls.
package tls
