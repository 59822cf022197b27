package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// v2 builds a PROXY protocol v2 header: version 2 with command cmd, the
// family and protocol byte fam, the address block and TLVs.
func v2(cmd, fam byte, block, tlvs []byte) []byte {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(block)+len(tlvs)))
	b = append(b, block...)
	return append(b, tlvs...)
}

// inet4 is a v2 address block: 203.0.113.7:5555 to 192.0.2.1:443.
var inet4 = []byte{203, 0, 113, 7, 192, 0, 2, 1, 0x15, 0xb3, 0x01, 0xbb}

func inet6Block() []byte {
	src := netip.MustParseAddr("2001:db8::7").As16()
	dst := netip.MustParseAddr("2001:db8::1").As16()
	b := append(src[:], dst[:]...)
	return append(b, 0x15, 0xb3, 0x01, 0xbb)
}

// afterHeader is what a client sends after its PROXY header in the
// proxyHeaderCase inputs that have one.
const afterHeader = "GET / HTTP/1.1\r\n"

// proxyHeaderCase is one input to parseProxyHeader and what it must yield.
type proxyHeaderCase struct {
	name    string
	in      []byte
	src     string // "" for the real peer
	n       int    // header length; 0: len(in) minus afterHeader
	wantErr string // "incomplete" for errProxyIncomplete
}

// proxyV1Cases are the PROXY protocol v1 (text) cases of TestParseProxyHeader,
// and the inputs that carry no signature at all.
func proxyV1Cases() []proxyHeaderCase {
	return []proxyHeaderCase{
		{name: "v1 TCP4", in: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n" + afterHeader), src: "203.0.113.7:5555"},
		{name: "v1 TCP6", in: []byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n" + afterHeader), src: "[2001:db8::7]:5555"},
		{name: "v1 TCP6 mapped", in: []byte("PROXY TCP6 ::ffff:203.0.113.7 ::1 1 2\r\n"), src: "203.0.113.7:1"},
		{name: "v1 UNKNOWN", in: []byte("PROXY UNKNOWN\r\n" + afterHeader)},
		{name: "v1 UNKNOWN with addresses", in: []byte("PROXY UNKNOWN 1.2.3.4 x y z\r\n" + afterHeader)},
		{name: "v1 port 0 and 65535", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"), src: "1.2.3.4:0"},
		{name: "v1 longest", in: []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"), src: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
		{name: "v1 partial", in: []byte("PROXY TCP4 1.2.3.4"), wantErr: "incomplete"},
		{name: "v1 partial signature", in: []byte("PRO"), wantErr: "incomplete"},
		{name: "nothing", in: nil, wantErr: "incomplete"},
		{name: "HTTP instead", in: []byte(afterHeader), wantErr: "no PROXY signature"},
		{name: "TLS instead", in: []byte{0x16, 0x03, 0x01, 0x00}, wantErr: "no PROXY signature"},
		{name: "v1 lower case", in: []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: "no PROXY signature"},
		{name: "v1 bare LF", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), wantErr: "CRLF"},
		{name: "v1 too long", in: []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"), wantErr: "longer than"},
		{name: "v1 no CRLF within bound", in: []byte("PROXY TCP4 " + strings.Repeat("1", 120)), wantErr: "longer than"},
		{name: "v1 TCP4 with IPv6", in: []byte("PROXY TCP4 2001:db8::7 2001:db8::1 1 2\r\n"), wantErr: "does not fit"},
		{name: "v1 TCP6 with IPv4", in: []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: "does not fit"},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), wantErr: "zone"},
		{name: "v1 leading zero port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), wantErr: "port"},
		{name: "v1 port too big", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), wantErr: "port"},
		{name: "v1 signed port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), wantErr: "port"},
		{name: "v1 double space", in: []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: "5 fields"},
		{name: "v1 extra field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), wantErr: "5 fields"},
		{name: "v1 trailing space", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), wantErr: "5 fields"},
		{name: "v1 UDP", in: []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: "protocol"},
		{name: "v1 leading zero address", in: []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), wantErr: "address"},
	}
}

// proxyV2Cases are the PROXY protocol v2 (binary) cases of TestParseProxyHeader.
func proxyV2Cases() []proxyHeaderCase {
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP
	return []proxyHeaderCase{
		{name: "v2 INET", in: append(v2(1, 0x11, inet4, nil), afterHeader...), src: "203.0.113.7:5555"},
		{name: "v2 INET6", in: append(v2(1, 0x21, inet6Block(), nil), afterHeader...), src: "[2001:db8::7]:5555"},
		{name: "v2 INET with TLVs", in: append(v2(1, 0x11, inet4, tlv), afterHeader...), src: "203.0.113.7:5555"},
		{name: "v2 LOCAL", in: append(v2(0, 0x00, nil, nil), afterHeader...)},
		{name: "v2 LOCAL with a block", in: append(v2(0, 0x11, inet4, nil), afterHeader...)},
		{name: "v2 UNSPEC family", in: append(v2(1, 0x00, nil, tlv), afterHeader...)},
		{name: "v2 UNSPEC protocol", in: append(v2(1, 0x10, inet4, nil), afterHeader...)},
		{name: "v2 UNIX", in: append(v2(1, 0x31, make([]byte, 216), nil), afterHeader...)},
		{name: "v2 partial signature", in: proxyV2Sig[:5], wantErr: "incomplete"},
		{name: "v2 partial fixed part", in: v2(1, 0x11, inet4, nil)[:14], wantErr: "incomplete"},
		{name: "v2 partial block", in: v2(1, 0x11, inet4, nil)[:20], wantErr: "incomplete"},
		{name: "v2 bad signature", in: append([]byte("\r\n\r\n\x00\r\nQUIT\r"), 0x21, 0x11, 0, 12), wantErr: "no PROXY signature"},
		{name: "v2 version 1", in: func() []byte { b := v2(1, 0x11, inet4, nil); b[12] = 0x11; return b }(), wantErr: "version 1"},
		{name: "v2 command 2", in: v2(2, 0x11, inet4, nil), wantErr: "command"},
		{name: "v2 family 4", in: v2(1, 0x41, inet4, nil), wantErr: "family"},
		{name: "v2 DGRAM", in: v2(1, 0x12, inet4, nil), wantErr: "datagram"},
		{name: "v2 protocol 3", in: v2(1, 0x13, inet4, nil), wantErr: "transport protocol"},
		{name: "v2 block too short", in: v2(1, 0x11, inet4[:8], nil), wantErr: "address block"},
		{name: "v2 INET6 block too short", in: v2(1, 0x21, inet4, nil), wantErr: "address block"},
	}
}

func TestParseProxyHeader(t *testing.T) {
	t.Parallel()
	tests := append(proxyV1Cases(), proxyV2Cases()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, n, err := parseProxyHeader(tt.in)
			switch {
			case tt.wantErr == "incomplete":
				if !errors.Is(err, errProxyIncomplete) {
					t.Fatalf("error %v, want errProxyIncomplete", err)
				}
				return
			case tt.wantErr != "":
				if err == nil || !errors.Is(err, ErrProxyHeader) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want ErrProxyHeader saying %q", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			src := ""
			if h.src.IsValid() {
				src = h.src.String()
			}
			if src != tt.src {
				t.Errorf("source %q, want %q", src, tt.src)
			}
			want := tt.n
			if want == 0 {
				want = len(tt.in) - len(afterHeader)
				if !strings.HasSuffix(string(tt.in), afterHeader) {
					want = len(tt.in)
				}
			}
			if n != want {
				t.Errorf("length %d, want %d", n, want)
			}
		})
	}
}

// fakeConn serves data in chunks of the given sizes (cycled).
type fakeConn struct {
	data  []byte
	sizes []int
	i     int
	net.Conn
}

var fakePeer = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 99), Port: 4444}

func (c *fakeConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = min(n, max(1, c.sizes[c.i%len(c.sizes)]))
		c.i++
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *fakeConn) RemoteAddr() net.Addr               { return fakePeer }
func (c *fakeConn) LocalAddr() net.Addr                { return fakePeer }
func (c *fakeConn) SetReadDeadline(time.Time) error    { return nil }
func (c *fakeConn) SetDeadline(time.Time) error        { return nil }
func (c *fakeConn) Close() error                       { return nil }
func (c *fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fakeConn) SetWriteDeadline(_ time.Time) error { return nil }

// readThrough reads data through a proxyConn, in reads of the given sizes,
// and returns what followed the header, the RemoteAddr, and the error
// that ended the reading (nil at EOF).
func readThrough(data []byte, sizes []int) (string, string, error) {
	pc := newProxyConn(&fakeConn{data: data, sizes: sizes}, time.Second, nil)
	remote := pc.RemoteAddr().String()
	var out strings.Builder
	buf := make([]byte, 7)
	for {
		n, err := pc.Read(buf)
		out.Write(buf[:n])
		if errors.Is(err, io.EOF) && !errors.Is(err, ErrProxyHeader) {
			return out.String(), remote, nil
		}
		if err != nil {
			return out.String(), remote, err
		}
	}
}

func TestProxyConnSplitReads(t *testing.T) {
	t.Parallel()
	const rest = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	long := make([]byte, 300) // TLVs longer than the buffer
	long[0], long[1], long[2] = 0x04, 0x01, 0x29
	tests := []struct {
		name    string
		in      []byte
		remote  string
		wantErr bool
	}{
		{name: "v1", in: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n" + rest), remote: "203.0.113.7:5555"},
		{name: "v2 with long TLVs", in: append(v2(1, 0x11, inet4, long), rest...), remote: "203.0.113.7:5555"},
		{name: "v2 LOCAL", in: append(v2(0, 0, nil, nil), rest...), remote: fakePeer.String()},
		{name: "no header", in: []byte(rest), remote: fakePeer.String(), wantErr: true},
		{name: "cut short", in: []byte("PROXY TCP4 203.0.113.7"), remote: fakePeer.String(), wantErr: true},
		{name: "TLVs cut short", in: v2(1, 0x11, inet4, long)[:200], remote: fakePeer.String(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, sizes := range [][]int{nil, {1}, {3, 17}, {300}} {
				got, remote, err := readThrough(tt.in, sizes)
				if tt.wantErr {
					var oe *net.OpError
					if !errors.Is(err, ErrProxyHeader) || !errors.As(err, &oe) || oe.Op != "read" || got != "" {
						t.Errorf("reads %v: read %q, error %v; want nothing and a read OpError wrapping ErrProxyHeader", sizes, got, err)
					}
				} else if err != nil || got != rest {
					t.Errorf("reads %v: read %q, error %v; want %q", sizes, got, err, rest)
				}
				if remote != tt.remote {
					t.Errorf("reads %v: RemoteAddr %s, want %s", sizes, remote, tt.remote)
				}
			}
		})
	}
}

// FuzzProxyProtocol checks that the parser never panics, never asks for
// more than it may read, agrees with itself on every prefix of its input,
// and that a proxyConn passes exactly the bytes after a valid header on,
// however the input is split into reads.
func FuzzProxyProtocol(f *testing.F) {
	seeds := [][]byte{
		[]byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\nGET / HTTP/1.1\r\n\r\n"),
		[]byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		v2(1, 0x11, inet4, []byte{4, 0, 1, 0}),
		v2(1, 0x21, inet6Block(), nil),
		v2(0, 0, nil, nil),
		v2(1, 0x31, make([]byte, 216), nil),
		[]byte("GET / HTTP/1.1\r\n"),
	}
	for i, s := range seeds {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		h, n, err := parseProxyHeader(data)
		incomplete := errors.Is(err, errProxyIncomplete)
		switch {
		case err == nil:
			if n <= 0 || (h.version == 1 && (n > proxyV1Max || n > len(data))) || (h.version == 2 && n < proxyV2Fixed) {
				t.Fatalf("header v%d of length %d in %d bytes", h.version, n, len(data))
			}
		case incomplete:
			if len(data) >= proxyBufSize {
				t.Fatalf("%d bytes are not enough", len(data))
			}
		case !errors.Is(err, ErrProxyHeader):
			t.Fatalf("error %v does not wrap ErrProxyHeader", err)
		}
		// Every prefix is incomplete or judged as the whole is.
		for k := range min(len(data), proxyBufSize) {
			ph, pn, perr := parseProxyHeader(data[:k])
			switch {
			case errors.Is(perr, errProxyIncomplete):
			case (perr == nil) != (err == nil) || incomplete:
				t.Fatalf("prefix of %d bytes: %v; whole: %v", k, perr, err)
			case perr == nil && (ph != h || pn != n):
				t.Fatalf("prefix of %d bytes: %+v %d; whole: %+v %d", k, ph, pn, h, n)
			}
		}

		rng := rand.New(rand.NewPCG(seed, seed>>3))
		sizes := make([]int, 5)
		for i := range sizes {
			sizes[i] = 1 + rng.IntN(80)
		}
		got, remote, rerr := readThrough(data, sizes)
		switch {
		case err == nil && n <= len(data):
			if rerr != nil || got != string(data[n:]) {
				t.Fatalf("read %q, %v; want %q", got, rerr, data[n:])
			}
			want := fakePeer.String()
			if h.src.IsValid() {
				want = h.src.String()
			}
			if remote != want {
				t.Fatalf("RemoteAddr %s, want %s", remote, want)
			}
		default: // invalid, or cut short
			if rerr == nil || got != "" || remote != fakePeer.String() {
				t.Fatalf("read %q, %v, RemoteAddr %s; want an error, nothing, the real peer", got, rerr, remote)
			}
		}
	})
}

// proxyServer starts a Server with the PROXY protocol on, in front of a
// backend that echoes the client address headers it gets.
func proxyServer(t *testing.T, e engine, opts ServerOptions) (string, *testBackend) {
	t.Helper()
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("X-Real-Ip")+"|"+r.Header.Get("X-Forwarded-Proto"))
	})
	h := New(Options{})
	t.Cleanup(h.CloseIdleConnections)
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
	opts.ProxyProtocol = true
	addr, _ := startServer(t, e, h, opts)
	return addr, b
}

// proxyHTTPCase is one connection of TestProxyProtocolHTTP: a PROXY header
// in front of a request, and how the server must answer it.
type proxyHTTPCase struct {
	name    string
	header  []byte
	trusted []string
	from    []string // ProxyProtocolFrom; the test client is 127.0.0.1
	code    int      // the status when not 200 (want is then unused)
	want    string   // the backend's echo; "" means closed unanswered
}

// proxyHTTPCases are the cases of TestProxyProtocolHTTP.
func proxyHTTPCases() []proxyHTTPCase {
	return []proxyHTTPCase{
		{name: "v1", header: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n"), want: "203.0.113.7|203.0.113.7|http"},
		{name: "v2 with TLVs", header: v2(1, 0x11, inet4, []byte{4, 0, 2, 0, 0}), want: "203.0.113.7|203.0.113.7|http"},
		{name: "v2 IPv6", header: v2(1, 0x21, inet6Block(), nil), want: "2001:db8::7|2001:db8::7|http"},
		{name: "LOCAL keeps the real peer", header: v2(0, 0, nil, nil), want: "127.0.0.1|127.0.0.1|http"},
		{name: "UNKNOWN keeps the real peer", header: []byte("PROXY UNKNOWN\r\n"), want: "127.0.0.1|127.0.0.1|http"},
		// Trust is judged on the PROXY source, not on the balancer.
		{name: "trusted source", header: []byte("PROXY TCP4 10.1.2.3 192.0.2.1 5555 80\r\n"), trusted: []string{"10.0.0.0/8"},
			want: "198.51.100.1, 10.1.2.3|198.51.100.1|http"},
		{name: "trusted balancer, untrusted source", header: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n"), trusted: []string{"127.0.0.1"},
			want: "203.0.113.7|203.0.113.7|http"},
		{name: "no header", header: nil},
		{name: "bad header", header: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555\r\n")},
		{name: "v2 DGRAM", header: v2(1, 0x12, inet4, nil)},
		// With ProxyProtocolFrom, only the balancers send the header.
		{name: "from the balancer", header: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n"), from: []string{"127.0.0.0/8"},
			want: "203.0.113.7|203.0.113.7|http"},
		{name: "from the balancer, no header", header: nil, from: []string{"127.0.0.1"}},
		{name: "not from the balancer, served as it is", header: nil, from: []string{"10.0.0.0/8"},
			want: "127.0.0.1|127.0.0.1|http"},
		{name: "not from the balancer, header not believed", header: []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n"),
			from: []string{"10.0.0.0/8"}, code: http.StatusBadRequest},
	}
}

// serverOptions are the ServerOptions tt's trusted and from ask for.
func (tt proxyHTTPCase) serverOptions(t *testing.T) ServerOptions {
	t.Helper()
	return ServerOptions{TrustedProxies: mustTrusted(t, tt.trusted), ProxyProtocolFrom: mustTrusted(t, tt.from)}
}

func TestProxyProtocolHTTP(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		const req = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n"
		tests := proxyHTTPCases()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				addr, b := proxyServer(t, e, tt.serverOptions(t))
				resps, c, br := exchange(t, addr, string(tt.header)+req, 1)
				if tt.code != 0 {
					if len(resps) != 1 || resps[0].StatusCode != tt.code || b.hits.Load() != 0 {
						t.Fatalf("responses %v (backend reached %d times), want one %d and no backend", resps, b.hits.Load(), tt.code)
					}
					return
				}
				if tt.want == "" {
					if len(resps) != 0 || !closedByServer(c, br) {
						t.Fatalf("got %d responses, want the connection closed unanswered", len(resps))
					}
					if b.hits.Load() != 0 {
						t.Error("the backend was reached")
					}
					return
				}
				if len(resps) != 1 || resps[0].StatusCode != http.StatusOK {
					t.Fatalf("responses %v, want one 200", resps)
				}
				if resps[0].body != tt.want {
					t.Errorf("backend saw %q, want %q", resps[0].body, tt.want)
				}
				if !keptOpen(t, c, br) {
					t.Error("connection not kept open")
				}
			})
		}
	})
}

// TestProxyProtocolSlowClient: a client that never finishes its header
// neither holds up other connections nor stays open past the
// read-header timeout.
func TestProxyProtocolSlowClient(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		addr, _ := proxyServer(t, e, ServerOptions{ReadHeaderTimeout: 200 * time.Millisecond})
		slow := rawConn(t, addr)
		if _, err := io.WriteString(slow, "PROXY TCP4 "); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			resps, _, _ := exchange(t, addr, "PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
			if len(resps) != 1 || resps[0].StatusCode != http.StatusOK {
				t.Fatalf("while a client is slow: %v, want 200", resps)
			}
		}
		if !closedByServer(slow, bufio.NewReader(slow)) {
			t.Error("a client that never finished its PROXY header was not cut off")
		}
	})
}

// startTLSServerOpts serves h with ServeTLS under opts and returns its
// address.
func startTLSServerOpts(t *testing.T, e engine, h *Handler, cfg *tls.Config, opts ServerOptions) string {
	t.Helper()
	ln := listen(t)
	s := NewServer(h, e.opts(opts))
	runServer(t, s, func() error { return s.ServeTLS(ln, TLSOptions{Config: cfg, HandshakeTimeout: testTimeout}) })
	return ln.Addr().String()
}

// TestProxyProtocolHTTPS: the header comes before the ClientHello, for
// HTTP/1.1 and HTTP/2; a silent client does not hold up the others.
func TestProxyProtocolHTTPS(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		pki := newTestPKI(t, "default")
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("X-Forwarded-Proto"))
		})
		h := New(Options{})
		t.Cleanup(h.CloseIdleConnections)
		h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
		addr := startTLSServerOpts(t, e, h, pki.serverConfig(), ServerOptions{ProxyProtocol: true})

		_ = rawConn(t, addr) // says nothing: its goroutine waits, the others go on

		for _, tt := range []struct {
			proto  string
			header []byte
		}{
			{"http/1.1", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n")},
			{"h2", v2(1, 0x11, inet4, nil)},
		} {
			tr := &http.Transport{
				ForceAttemptHTTP2: tt.proto == "h2",
				DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					raw, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					if _, err := raw.Write(tt.header); err != nil {
						return nil, err
					}
					tc := tls.Client(raw, &tls.Config{RootCAs: pki.pool, ServerName: "default", NextProtos: []string{tt.proto}, MinVersion: tls.VersionTLS12})
					if err := tc.HandshakeContext(ctx); err != nil {
						return nil, err
					}
					return tc, nil
				},
			}
			c := &http.Client{Transport: tr, Timeout: testTimeout}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://default/", nil)
			resp, body := do(t, c, req)
			tr.CloseIdleConnections()
			if resp.StatusCode != http.StatusOK || body != "203.0.113.7|https" || resp.TLS == nil || resp.TLS.NegotiatedProtocol != tt.proto {
				t.Errorf("%s: %d %q (TLS %v), want 200 \"203.0.113.7|https\" over %s", tt.proto, resp.StatusCode, body, resp.TLS != nil, tt.proto)
			}
		}

		// Without a header, the ClientHello is not a PROXY header: closed.
		if tc, err := (&tls.Dialer{Config: &tls.Config{RootCAs: pki.pool, ServerName: "default", MinVersion: tls.VersionTLS12}}).DialContext(t.Context(), "tcp", addr); err == nil {
			tc.Close()
			t.Error("a TLS handshake without a PROXY header succeeded")
		}

		// With ProxyProtocolFrom not naming this client, it is served without
		// a header, as the client it is.
		from := mustTrusted(t, []string{"10.0.0.0/8"})
		direct := startTLSServerOpts(t, e, h, pki.serverConfig(), ServerOptions{ProxyProtocol: true, ProxyProtocolFrom: from})
		c := dialTo(tlsClient(pki.pool, false), direct)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://default/", nil)
		if resp, body := do(t, c, req); resp.StatusCode != http.StatusOK || body != "127.0.0.1|https" {
			t.Errorf("a direct client outside ProxyProtocolFrom: %d %q, want 200 \"127.0.0.1|https\"", resp.StatusCode, body)
		}
	})
}
