package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/pipeline"
)

// The PROXY protocol (HAProxy's "The PROXY protocol", versions 1 and 2)
// lets an L4 load balancer in front (AWS NLB, HAProxy, a cloud TCP load
// balancer) tell Postern the client's address: every connection starts
// with one header, text (v1) or binary (v2), before any byte of TLS or
// HTTP. With ServerOptions.ProxyProtocol, a connection without a valid
// header is closed, unanswered (spec §2: the receiver must not guess).
//
// Only the source address is used: it becomes the connection's
// RemoteAddr, and so the peer that TrustedProxies judges. The LOCAL
// command (health checks of the balancer itself), UNKNOWN (v1), and the
// UNSPEC and UNIX families (v2) keep the real peer. TLVs are skipped.

// proxyV2Sig starts every v2 header (spec §2.2).
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	// proxyV1Max is the longest v1 header, CRLF included (spec §2.1).
	proxyV1Max = 107
	// proxyV2Fixed is the fixed part of a v2 header: signature,
	// version and command, family and protocol, length.
	proxyV2Fixed = 16
	// proxyBufSize holds a whole v1 header, or a v2 header's fixed part
	// and its largest address block (216 bytes, AF_UNIX).
	proxyBufSize = 256
)

// errProxyIncomplete means the bytes so far start a valid header but do
// not finish it.
var errProxyIncomplete = errors.New("incomplete PROXY protocol header")

// ErrProxyHeader is wrapped by the error of a connection whose PROXY
// protocol header was missing or invalid.
var ErrProxyHeader = errors.New("invalid PROXY protocol header")

// proxyHeader is what a PROXY protocol header says.
type proxyHeader struct {
	version int
	// src is the client's address and port; the zero value (LOCAL,
	// UNKNOWN, UNSPEC, UNIX) means the connection's own peer.
	src netip.AddrPort
	// dst is the address the client connected to; zero like src.
	dst netip.AddrPort
}

// parseProxyHeader parses the PROXY protocol header at the start of b and
// returns it with its length n, TLVs included (for v2, n may be more than
// len(b): the caller skips the rest). errProxyIncomplete means b is a
// valid beginning that needs more bytes; any other error wraps
// ErrProxyHeader. It never reads past what it needs: at most proxyV1Max
// bytes of a v1 header, proxyV2Fixed plus the address block of a v2 one.
func parseProxyHeader(b []byte) (h proxyHeader, n int, err error) {
	if len(b) == 0 {
		return h, 0, errProxyIncomplete
	}
	switch b[0] {
	case 'P':
		return parseProxyV1(b)
	case '\r':
		return parseProxyV2(b)
	}
	return h, 0, fmt.Errorf("%w: no PROXY signature", ErrProxyHeader)
}

// parseProxyV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN ...\r\n" (spec §2.1).
func parseProxyV1(b []byte) (h proxyHeader, n int, err error) {
	const prefix = "PROXY "
	if k := min(len(b), len(prefix)); string(b[:k]) != prefix[:k] {
		return h, 0, fmt.Errorf("%w: no PROXY signature", ErrProxyHeader)
	}
	end := bytes.IndexByte(b[:min(len(b), proxyV1Max)], '\n')
	if end < 0 {
		if len(b) >= proxyV1Max {
			return h, 0, fmt.Errorf("%w: v1 header longer than %d bytes", ErrProxyHeader, proxyV1Max)
		}
		return h, 0, errProxyIncomplete
	}
	if end == 0 || b[end-1] != '\r' {
		return h, 0, fmt.Errorf("%w: v1 header does not end in CRLF", ErrProxyHeader)
	}
	line := b[len(prefix) : end-1]
	h.version, n = 1, end+1
	var f [6][]byte
	nf := 0
	for nf < len(f) {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			f[nf] = line
			nf++
			break
		}
		f[nf], line = line[:i], line[i+1:]
		nf++
	}
	if nf > 0 && string(f[0]) == "UNKNOWN" {
		return h, n, nil // the rest of the line is to be ignored
	}
	if nf != 5 || bytes.IndexByte(f[4], ' ') >= 0 {
		return h, 0, fmt.Errorf("%w: v1 header needs 5 fields", ErrProxyHeader)
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return h, 0, fmt.Errorf("%w: v1 protocol %q", ErrProxyHeader, f[0])
	}
	src, err1 := parseV1Addr(f[1], want4)
	dst, err2 := parseV1Addr(f[2], want4)
	sport, err3 := parseV1Port(f[3])
	dport, err4 := parseV1Port(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return h, 0, fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	h.src = netip.AddrPortFrom(src, sport)
	h.dst = netip.AddrPortFrom(dst, dport)
	return h, n, nil
}

func parseV1Addr(b []byte, want4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(b))
	switch {
	case err != nil:
		return a, fmt.Errorf("v1 address: %w", err)
	case a.Zone() != "":
		return a, fmt.Errorf("v1 address %q has a zone", b)
	case want4 != a.Is4():
		return a, fmt.Errorf("v1 address %q does not fit the protocol", b)
	}
	return a.Unmap(), nil
}

// parseV1Port parses a port: decimal, no sign, no leading zero.
func parseV1Port(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("v1 port %q", b)
	}
	var n uint32
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("v1 port %q", b)
		}
		n = n*10 + uint32(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("v1 port %q", b)
	}
	return uint16(n), nil
}

// parseProxyV2 parses a binary header (spec §2.2).
func parseProxyV2(b []byte) (h proxyHeader, n int, err error) {
	if k := min(len(b), len(proxyV2Sig)); !bytes.Equal(b[:k], proxyV2Sig[:k]) {
		return h, 0, fmt.Errorf("%w: no PROXY signature", ErrProxyHeader)
	}
	if len(b) < proxyV2Fixed {
		return h, 0, errProxyIncomplete
	}
	verCmd, famProto := b[12], b[13]
	if verCmd>>4 != 2 {
		return h, 0, fmt.Errorf("%w: version %d", ErrProxyHeader, verCmd>>4)
	}
	h.version = 2
	n = proxyV2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	switch verCmd & 0xf {
	case 0x0: // LOCAL: the balancer's own connection; the block is ignored
		return h, n, nil
	case 0x1: // PROXY
	default:
		return h, 0, fmt.Errorf("%w: command %#x", ErrProxyHeader, verCmd&0xf)
	}
	var need int
	switch famProto >> 4 {
	case 0x0: // UNSPEC
		return h, n, nil
	case 0x1: // INET
		need = 12
	case 0x2: // INET6
		need = 36
	case 0x3: // UNIX
		need = 216
	default:
		return h, 0, fmt.Errorf("%w: address family %#x", ErrProxyHeader, famProto>>4)
	}
	if n-proxyV2Fixed < need {
		return h, 0, fmt.Errorf("%w: address block of %d bytes, want %d", ErrProxyHeader, n-proxyV2Fixed, need)
	}
	switch famProto & 0xf {
	case 0x0: // UNSPEC: an unknown protocol; use the real peer
		return h, n, nil
	case 0x1: // STREAM
	case 0x2:
		return h, 0, fmt.Errorf("%w: a datagram source for a stream connection", ErrProxyHeader)
	default:
		return h, 0, fmt.Errorf("%w: transport protocol %#x", ErrProxyHeader, famProto&0xf)
	}
	if famProto>>4 == 0x3 {
		return h, n, nil // a Unix socket has no address to use
	}
	if len(b) < proxyV2Fixed+need {
		return h, 0, errProxyIncomplete
	}
	blk := b[proxyV2Fixed:]
	var src, dst netip.Addr
	if need == 12 {
		src = netip.AddrFrom4([4]byte(blk[0:4]))
		dst = netip.AddrFrom4([4]byte(blk[4:8]))
	} else {
		src = netip.AddrFrom16([16]byte(blk[0:16])).Unmap()
		dst = netip.AddrFrom16([16]byte(blk[16:32])).Unmap()
	}
	ports := blk[need-4 : need]
	h.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2]))
	h.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:4]))
	return h, n, nil
}

// proxyListener requires a PROXY protocol header on every connection it
// accepts. Accept returns at once; the header is read by the connection's
// first Read or RemoteAddr, on the goroutine that serves it, so a slow or
// silent client never holds up the accept loop.
type proxyListener struct {
	net.Listener
	timeout time.Duration
	log     *zap.Logger
	from    *pipeline.TrustedProxies // narrows the requirement to these peers (sendsProxyHeader)
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !sendsProxyHeader(c, l.from) {
		return c, nil
	}
	return newProxyConn(c, l.timeout, l.log), nil
}

// sendsProxyHeader reports whether c must start with a PROXY protocol
// header: every connection when from is empty, else those whose peer is
// in from (ServerOptions.ProxyProtocolFrom).
func sendsProxyHeader(c net.Conn, from *pipeline.TrustedProxies) bool {
	if from.Empty() {
		return true
	}
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	return ok && from.Contains(a.AddrPort().Addr().Unmap())
}

// proxyConn is a connection that starts with a PROXY protocol header. The
// header is read once, under its own read deadline (timeout from the first
// Read or RemoteAddr); the bytes read past it are served first. After the
// header the read deadline is the one the caller set last, none if it set
// none.
type proxyConn struct {
	net.Conn
	timeout time.Duration
	log     *zap.Logger

	once    sync.Once
	err     error    // set when the header was refused; every Read returns it
	remote  net.Addr // from the header; nil means the real peer's
	pending []byte   // bytes read past the header, not yet returned
	buf     [proxyBufSize]byte

	dlMu     sync.Mutex
	deadline time.Time // the caller's read deadline
}

func newProxyConn(c net.Conn, timeout time.Duration, log *zap.Logger) *proxyConn {
	if log == nil {
		log = zap.NewNop()
	}
	return &proxyConn{Conn: c, timeout: timeout, log: log}
}

// handshake reads the header if that was not done yet and returns the
// error that refused it, if any.
func (c *proxyConn) handshake() error {
	c.once.Do(c.readHeader)
	return c.err
}

func (c *proxyConn) readHeader() {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	h, err := c.readProxyHeader()
	if c.timeout > 0 {
		c.dlMu.Lock()
		_ = c.Conn.SetReadDeadline(c.deadline)
		c.dlMu.Unlock()
	}
	if err != nil {
		if ce := c.log.Check(zap.DebugLevel, "PROXY protocol header refused"); ce != nil {
			ce.Write(zap.String("remote", c.Conn.RemoteAddr().String()), zap.Error(err))
		}
		// A read error net/http closes the connection on without an
		// answer (isCommonNetReadError): spec §2 wants no answer.
		c.err = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.Conn.RemoteAddr(), Err: err}
		c.pending = nil
		return
	}
	if h.src.IsValid() {
		c.remote = net.TCPAddrFromAddrPort(h.src)
	}
}

// readProxyHeader reads and parses the header, keeps what was read past
// it in c.pending, and skips the TLVs of a v2 header.
func (c *proxyConn) readProxyHeader() (proxyHeader, error) {
	got := 0
	for {
		h, n, err := parseProxyHeader(c.buf[:got])
		switch {
		case err == nil:
			if n <= got {
				c.pending = c.buf[n:got]
				return h, nil
			}
			return h, c.skip(n - got)
		case !errors.Is(err, errProxyIncomplete):
			return h, err
		case got == len(c.buf):
			// parseProxyHeader never needs more than proxyBufSize.
			return h, fmt.Errorf("%w: header too long", ErrProxyHeader)
		}
		m, err := c.Conn.Read(c.buf[got:])
		got += m
		if err != nil && m == 0 {
			return h, fmt.Errorf("%w: %w", ErrProxyHeader, err)
		}
	}
}

// skip discards the next n bytes (TLVs) and keeps what comes after.
func (c *proxyConn) skip(n int) error {
	for n > 0 {
		m, err := c.Conn.Read(c.buf[:])
		if m > n {
			c.pending = c.buf[n:m]
			return nil
		}
		n -= m
		if err != nil && n > 0 {
			return fmt.Errorf("%w: %w", ErrProxyHeader, err)
		}
	}
	return nil
}

// Read returns the bytes that follow the header.
func (c *proxyConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// RemoteAddr returns the source address of the header, or the real peer's
// when the header names none (or was refused). It reads the header first.
func (c *proxyConn) RemoteAddr() net.Addr {
	if c.handshake() == nil && c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// SetDeadline sets the read and write deadlines.
func (c *proxyConn) SetDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.deadline = t
	c.dlMu.Unlock()
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *proxyConn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.deadline = t
	c.dlMu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *proxyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
