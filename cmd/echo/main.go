// Command echo is the demo and test backend of the quickstart: an HTTP
// server that answers every request with its own name and the request it
// saw, so a person can tell which backend a request was routed to.
//
//	echo --name web-1 --listen 127.0.0.11:9000[,127.0.0.12:9000]
//
// A few paths behave differently, for demos and for the fault tests in
// test/e2e:
//
//   - GET /stream answers with server-sent events, flushing each one, to show
//     that streaming passes through the proxy unbuffered: five, one per
//     200 ms, or ?count=N&interval=D (up to 1,000 events, 10 s apart).
//   - GET /delay?d=D waits D (up to one minute) before it answers as any
//     other path does: a slow request.
//   - GET /ws is a WebSocket (RFC 6455) that sends every message it receives
//     back as it came.
//
// It speaks HTTP/1.1 and, with prior knowledge, HTTP/2 without TLS (h2c).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
)

// Bounds of the query parameters of /stream and /delay, so that no request
// can keep a backend busy for long.
const (
	maxEvents   = 1000
	maxInterval = 10 * time.Second
	maxDelay    = time.Minute
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "echo", "name to answer with")
	listen := fs.String("listen", "127.0.0.1:9000", "comma-separated addresses to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// HTTP/1.1, and HTTP/2 without TLS with prior knowledge (h2c) for
	// the proxy's H2C and gRPC backends.
	srv := &http.Server{Handler: handler(*name), ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	var lc net.ListenConfig
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := lc.Listen(ctx, "tcp", strings.TrimSpace(addr))
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	wg.Wait()
	return err
}

func handler(name string) http.Handler {
	// No Handshake: any Origin is accepted (x/net's default Handler refuses
	// a request without one); this is a test backend, not a browser's.
	ws := websocket.Server{Handler: echoMessages}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			stream(w, r, name)
			return
		case "/ws":
			ws.ServeHTTP(w, r)
			return
		case "/delay":
			d, err := time.ParseDuration(r.URL.Query().Get("d"))
			if err != nil || d < 0 || d > maxDelay {
				http.Error(w, fmt.Sprintf("want ?d=DURATION, at most %s", maxDelay), http.StatusBadRequest)
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(d):
			}
		}
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Echo-Name", name)
		var b strings.Builder
		fmt.Fprintf(&b, "backend: %s", name)
		if local != nil {
			fmt.Fprintf(&b, " (%s)", local)
		}
		fmt.Fprintf(&b, "\nrequest: %s %s %s\nhost: %s\n", r.Method, r.RequestURI, r.Proto, r.Host)
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range r.Header[k] {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		if n > 0 {
			fmt.Fprintf(&b, "body: %d bytes\n", n)
		}
		_, _ = io.WriteString(w, b.String())
	})
}

// echoMessages sends every WebSocket message back, text as text and binary
// as binary, until the connection ends.
func echoMessages(c *websocket.Conn) {
	defer c.Close()
	for {
		var m message
		if err := frames.Receive(c, &m); err != nil {
			return
		}
		if err := frames.Send(c, m); err != nil {
			return
		}
	}
}

// message is one WebSocket message and its frame type.
type message struct {
	data []byte
	typ  byte
}

// frames is a WebSocket codec for message: unlike websocket.Message it
// keeps the frame type, so that the echo answers in kind.
var frames = websocket.Codec{
	Marshal: func(v any) ([]byte, byte, error) {
		m, ok := v.(message)
		if !ok {
			return nil, websocket.UnknownFrame, websocket.ErrNotSupported
		}
		return m.data, m.typ, nil
	},
	Unmarshal: func(data []byte, typ byte, v any) error {
		m, ok := v.(*message)
		if !ok {
			return websocket.ErrNotSupported
		}
		m.data, m.typ = data, typ
		return nil
	},
}

// stream writes server-sent events, flushing each one: ?count= events (5
// by default), ?interval= apart (200 ms by default).
func stream(w http.ResponseWriter, r *http.Request, name string) {
	count, interval := 5, 200*time.Millisecond
	q := r.URL.Query()
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEvents {
			http.Error(w, fmt.Sprintf("want ?count= from 1 to %d", maxEvents), http.StatusBadRequest)
			return
		}
		count = n
	}
	if v := q.Get("interval"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxInterval {
			http.Error(w, fmt.Sprintf("want ?interval=DURATION, at most %s", maxInterval), http.StatusBadRequest)
			return
		}
		interval = d
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	for i := 1; i <= count; i++ {
		if _, err := fmt.Fprintf(w, "data: %s event %d at %s\n\n", name, i, time.Now().Format(time.RFC3339Nano)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if i == count {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(interval):
		}
	}
}
