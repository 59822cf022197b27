// Command echo is the demo and test backend of the quickstart: an HTTP
// server that answers every request with its own name and the request it
// saw, so a person can tell which backend a request was routed to.
//
//	echo --name web-1 --listen 127.0.0.11:9000[,127.0.0.12:9000]
//
// GET /stream answers with a few server-sent events, one per 200 ms, to show
// that streaming passes through the proxy unbuffered.
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
	"strings"
	"sync"
	"syscall"
	"time"
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

	srv := &http.Server{Handler: handler(*name), ReadHeaderTimeout: 10 * time.Second}
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			stream(w, r, name)
			return
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

// stream writes server-sent events, flushing each one.
func stream(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	for i := 1; i <= 5; i++ {
		if _, err := fmt.Fprintf(w, "data: %s event %d at %s\n\n", name, i, time.Now().Format(time.RFC3339Nano)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
