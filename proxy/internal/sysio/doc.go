// Package sysio reads and writes TCP connections with raw system calls
// through the runtime's poller (sysio_linux.go says why), for every
// connection the proxy accepts (Listener) or dials to an endpoint (Wrap).
// Elsewhere than on Linux it changes nothing.
package sysio
