package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// supportedProbes refuses a container whose probes or hooks the agent cannot run (exec
// and gRPC), so it waits with CreateContainerConfigError instead of being restarted
// over and over by a probe that could never pass.
func supportedProbes(c *corev1.Container) error {
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil {
			continue
		}
		switch {
		case p.HTTPGet != nil, p.TCPSocket != nil:
		case p.Exec != nil:
			return fmt.Errorf("%s probe: exec probes are not supported by the test node agent (httpGet and tcpSocket are)", name)
		default:
			return fmt.Errorf("%s probe: gRPC probes are not supported by the test node agent (httpGet and tcpSocket are)", name)
		}
	}
	return nil
}

// probe runs the container's startup probe until it passes, then its readiness and
// liveness probes, until ctx ends (the process exited or is being stopped). A
// container without a readiness probe is ready once it is started; failed liveness
// restarts it.
func (c *container) probe(ctx context.Context) {
	if p := c.spec.StartupProbe; p != nil {
		if !c.loop(ctx, "Startup", p, func(ok bool) bool {
			if ok {
				c.mu.Lock()
				c.started = true
				c.mu.Unlock()
				c.w.notify()
				return false
			}
			return true
		}, true) {
			return
		}
	}
	if c.spec.ReadinessProbe == nil {
		c.mu.Lock()
		c.ready = true
		c.mu.Unlock()
		c.w.notify()
	} else {
		go c.loop(ctx, "Readiness", c.spec.ReadinessProbe, func(ok bool) bool {
			c.mu.Lock()
			changed := c.ready != ok
			c.ready = ok
			c.mu.Unlock()
			if changed {
				c.w.notify()
			}
			return true
		}, false)
	}
	if p := c.spec.LivenessProbe; p != nil {
		c.loop(ctx, "Liveness", p, func(ok bool) bool {
			if !ok {
				go c.w.restartUnhealthy(c)
				return false
			}
			return true
		}, false)
	}
}

// loop probes every period, calling report with the outcome once the success or
// failure threshold is reached; report says whether to go on. A startup probe that
// fails its threshold restarts the container, as liveness does. loop returns false
// when ctx ended.
func (c *container) loop(ctx context.Context, kind string, p *corev1.Probe, report func(bool) bool, startup bool) bool {
	period := seconds(p.PeriodSeconds, 10)
	timeout := seconds(p.TimeoutSeconds, 1)
	success := int(max(p.SuccessThreshold, 1))
	failure := 3
	if p.FailureThreshold > 0 {
		failure = int(p.FailureThreshold)
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	okRun, failRun := 0, 0
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.check(pctx, p)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			okRun, failRun = okRun+1, 0
			if okRun >= success && !report(true) {
				return true
			}
		} else {
			okRun, failRun = 0, failRun+1
			c.w.a.events.Eventf(c.w.current(), corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
			if failRun >= failure {
				if startup {
					go c.w.restartUnhealthy(c)
					return false
				}
				if !report(false) {
					return true
				}
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func seconds(v, def int32) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

func (c *container) check(ctx context.Context, p *corev1.Probe) error {
	switch {
	case p.HTTPGet != nil:
		return c.httpGet(ctx, p.HTTPGet)
	case p.TCPSocket != nil:
		return c.tcpSocket(ctx, p.TCPSocket)
	}
	return errors.New("unsupported probe")
}

// port resolves a port by number or by the name of one of the container's ports.
func (c *container) port(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.spec.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no port named %q in container %s", p.StrVal, c.spec.Name)
}

// httpGet is an HTTP(S) GET as the kubelet sends it: to the Pod's address unless a
// host is given, a status from 200 to 399 passes, TLS is not verified.
func (c *container) httpGet(ctx context.Context, g *corev1.HTTPGetAction) error {
	port, err := c.port(g.Port)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = c.w.podIP()
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

var probeClient = &http.Client{Transport: &http.Transport{
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe targets either
}}

func (c *container) tcpSocket(ctx context.Context, s *corev1.TCPSocketAction) error {
	port, err := c.port(s.Port)
	if err != nil {
		return err
	}
	host := s.Host
	if host == "" {
		host = c.w.podIP()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return conn.Close()
}
