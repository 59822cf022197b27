//go:build !linux

package proxy

import (
	"io"
	"net"
)

// connIO returns what the fast path reads c with and writes c with
// (sysio_linux.go has the reason for the Linux one).
func connIO(c net.Conn) io.ReadWriter { return c }

// sysConnOf returns c.
func sysConnOf(c net.Conn) net.Conn { return c }
