package sysio

import "net"

// Listener hands out its connections wrapped (Wrap): the proxy's Serve and
// ServeTLS put it in front of everything else (PROXY protocol, the fast
// path, TLS, net/http), so that every read and write of a client
// connection is a raw system call.
type Listener struct{ net.Listener }

// Accept returns the next connection, wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
