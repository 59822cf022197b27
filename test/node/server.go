package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// serve runs the kubelet port on the Node's address: HTTPS with the Node's serving
// certificate, client certificates from the cluster's CA required (the API server
// presents one when it proxies `kubectl logs`).
func (a *agent) serve() (*http.Server, error) {
	ca, err := os.ReadFile(a.c.clientCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate", a.c.clientCA)
	}
	cert, err := tls.LoadX509KeyPair(a.c.tlsCert, a.c.tlsKey)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", a.containerLogs)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(a.net.nodeIP.String(), strconv.Itoa(a.c.kubeletPort)))
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return srv, nil
}

// containerLogs serves a container's log as the kubelet does: follow, previous,
// timestamps, tailLines, sinceSeconds, sinceTime and limitBytes.
func (a *agent) containerLogs(rw http.ResponseWriter, r *http.Request) {
	ns, name, cname := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	c := a.findContainer(ns, name, cname)
	if c == nil {
		http.Error(rw, fmt.Sprintf("container %q in pod %s/%s is not on node %s", cname, ns, name, a.c.nodeName), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	c.mu.Lock()
	run, running, exited := c.restarts, c.running, c.exited
	everRan := c.everRan
	c.mu.Unlock()
	if q.Get("previous") == "true" {
		if run == 0 {
			http.Error(rw, fmt.Sprintf("previous terminated container %q in pod %q not found", cname, name), http.StatusBadRequest)
			return
		}
		run--
		running = false
	} else if !everRan {
		http.Error(rw, fmt.Sprintf("container %q in pod %q is waiting to start", cname, name), http.StatusBadRequest)
		return
	}
	var since time.Time
	if s := q.Get("sinceSeconds"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			since = time.Now().Add(-time.Duration(n) * time.Second)
		}
	}
	if s := q.Get("sinceTime"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			since = t
		}
	}
	tail := -1
	if s := q.Get("tailLines"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			tail = n
		}
	}
	limit := int64(-1)
	if s := q.Get("limitBytes"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			limit = n
		}
	}
	f, err := os.Open(c.logPath(run))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	rw.Header().Set("Content-Type", "text/plain")
	out := &logOut{w: rw, timestamps: q.Get("timestamps") == "true", since: since, limit: limit}
	if fl, ok := rw.(http.Flusher); ok {
		out.flush = fl.Flush
	}
	// The lines there now (the last tailLines of them), then, with follow, what is
	// added until the container ends or the client goes.
	b, err := io.ReadAll(f)
	if err != nil {
		return
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	partial := []byte{}
	if len(lines) > 0 && !bytes.HasSuffix(lines[len(lines)-1], []byte("\n")) {
		partial, lines = lines[len(lines)-1], lines[:len(lines)-1]
	}
	if tail >= 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	for _, l := range lines {
		if !out.line(l) {
			return
		}
	}
	if q.Get("follow") != "true" || !running {
		return
	}
	rd := bufio.NewReader(io.MultiReader(bytes.NewReader(partial), f))
	var pending []byte
	for {
		chunk, err := rd.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			if !out.line(pending) {
				return
			}
			pending = nil
			continue
		}
		if !errors.Is(err, io.EOF) {
			return
		}
		rd = bufio.NewReader(f)
		select {
		case <-r.Context().Done():
			return
		case <-exited:
			// Read what the last moments wrote, then end.
			rest, _ := io.ReadAll(f)
			for _, l := range bytes.SplitAfter(append(pending, rest...), []byte("\n")) {
				if len(l) > 0 && !out.line(l) {
					return
				}
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type logOut struct {
	w          io.Writer
	flush      func()
	timestamps bool
	since      time.Time
	limit      int64
}

// line writes one CRI log line ("<time> <stream> <tag> <text>") as kubectl shows it.
func (o *logOut) line(l []byte) bool {
	parts := strings.SplitN(string(l), " ", 4)
	if len(parts) < 4 {
		return true
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[0])
	if err == nil && !o.since.IsZero() && ts.Before(o.since) {
		return true
	}
	text := parts[3]
	if o.timestamps {
		text = parts[0] + " " + text
	}
	if o.limit >= 0 {
		if o.limit == 0 {
			return false
		}
		if int64(len(text)) > o.limit {
			text = text[:o.limit]
		}
		o.limit -= int64(len(text))
	}
	if _, err := io.WriteString(o.w, text); err != nil {
		return false
	}
	if o.flush != nil {
		o.flush()
	}
	return true
}

func (a *agent) findContainer(ns, pod, name string) *container {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		p := w.current()
		if p.Namespace != ns || p.Name != pod {
			continue
		}
		for _, c := range append(append([]*container{}, w.inits...), w.containers...) {
			if c.spec.Name == name {
				return c
			}
		}
	}
	return nil
}
