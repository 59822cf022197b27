// Command backend is the upstream of the peers benchmark (test/bench/peers):
// a minimal HTTP/1.1 server that answers every request with the same small
// body, keeps connections alive and logs nothing. It is much cheaper per
// request than any proxy in front of it, so that the proxy, not the backend,
// is what the benchmark measures (run.sh measures the backend alone too).
//
//	backend --name b1 --listen 127.0.0.11:17000[,127.0.0.12:17000]
//
// It understands just enough HTTP/1.1 for a reverse proxy's requests:
// keep-alive (HTTP/1.1 default, HTTP/1.0 with "Connection: keep-alive"),
// "Connection: close", and request bodies with a Content-Length, which are
// read and dropped. A chunked request body gets 501 and the connection is
// closed. It is a benchmark fixture, not a web server.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// bodySize is the size of every response body, in bytes.
const bodySize = 100

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	name := fs.String("name", "b1", "name written at the start of the body, so a client can tell the backends apart")
	listen := fs.String("listen", "127.0.0.1:17000", "comma-separated addresses to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	resp := responses(body(*name))
	var lc net.ListenConfig
	var lns []net.Listener
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := lc.Listen(ctx, "tcp", strings.TrimSpace(addr))
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Go(func() { accept(ln, resp) })
	}
	<-ctx.Done()
	for _, ln := range lns {
		_ = ln.Close()
	}
	wg.Wait()
	return nil
}

// body returns the response body of the backend called name: bodySize bytes
// that start with "bench backend <name>".
func body(name string) []byte {
	b := []byte("bench backend " + name + ": ")
	for len(b) < bodySize-1 {
		b = append(b, 'x')
	}
	return append(b[:bodySize-1], '\n')
}

// canned holds the complete responses the backend writes, headers and body.
type canned struct {
	keepAlive, close, keepAlive10, notImplemented []byte
}

func responses(body []byte) canned {
	head := func(proto, status, conn string, n int) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n", proto, status, n)
		if conn != "" {
			fmt.Fprintf(&b, "Connection: %s\r\n", conn)
		}
		b.WriteString("\r\n")
		return b.Bytes()
	}
	return canned{
		keepAlive:      append(head("HTTP/1.1", "200 OK", "", len(body)), body...),
		close:          append(head("HTTP/1.1", "200 OK", "close", len(body)), body...),
		keepAlive10:    append(head("HTTP/1.1", "200 OK", "keep-alive", len(body)), body...),
		notImplemented: head("HTTP/1.1", "501 Not Implemented", "close", 0),
	}
}

func accept(ln net.Listener, resp canned) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go serve(c, resp)
	}
}

// serve answers the requests of one connection until the client closes it,
// asks to close it, or sends something this fixture does not handle.
func serve(c net.Conn, resp canned) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 8<<10)
	for {
		req, err := readRequest(br)
		if err != nil {
			if errors.Is(err, errChunked) {
				_, _ = c.Write(resp.notImplemented)
			}
			return
		}
		if req.contentLength > 0 {
			if _, err := br.Discard(int(req.contentLength)); err != nil {
				return
			}
		}
		out := resp.keepAlive
		switch {
		case req.close:
			out = resp.close
		case req.http10:
			out = resp.keepAlive10
		}
		if _, err := c.Write(out); err != nil || req.close {
			return
		}
	}
}

// request is what serve needs to know of a request.
type request struct {
	http10        bool // HTTP/1.0: close unless the client asked for keep-alive
	close         bool // close the connection after the response
	contentLength int64
}

var errChunked = errors.New("chunked request body")

// readRequest reads one request head from br. Its lines are slices of br's
// buffer; nothing is copied or allocated.
func readRequest(br *bufio.Reader) (request, error) {
	var req request
	line, err := br.ReadSlice('\n')
	if err != nil {
		return req, err
	}
	line = bytes.TrimRight(line, "\r\n")
	req.http10 = bytes.HasSuffix(line, []byte(" HTTP/1.0"))
	req.close = req.http10
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return req, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return req, nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return req, io.ErrUnexpectedEOF
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return req, fmt.Errorf("bad content-length %q", v)
			}
			req.contentLength = n
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return req, errChunked
		case bytes.EqualFold(k, []byte("Connection")):
			switch {
			case bytes.EqualFold(v, []byte("close")):
				req.close = true
			case bytes.EqualFold(v, []byte("keep-alive")):
				req.close = false
			}
		}
	}
}
