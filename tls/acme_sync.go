package tls

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/acme"
)

// Back-off between attempts for one host: it doubles from retryMin after
// every failure, up to retryMax.
const (
	retryMin = 10 * time.Second
	retryMax = 10 * time.Minute
	// maxWait caps the back-off of a replica that waits for the leader to
	// store a certificate in the shared cache.
	maxWait = time.Minute
)

// hostState is what the issuer knows about one ACME host of the table.
type hostState struct {
	ready    bool    // autocert holds its certificate
	running  bool    // an attempt is under way
	failures int     // attempts that failed in a row
	retry    stopper // the pending retry, if any
	gone     bool    // left the table while an attempt was under way
}

// Sync starts obtaining certificates for the ACME hosts of the live table
// that have none yet; call it after every table swap. It returns at once:
// the work runs in the background, at most two hosts at a time and one
// attempt per host at a time, with a per-host back-off after failures
// (10 s doubling up to 10 min, longer when the CA asks for it). A replica
// whose CanOrder reports false only picks up certificates from the shared
// cache, retrying with the same back-off (capped at a minute) until the
// leader has stored them.
// Hosts that left the table are forgotten.
//
// ctx bounds the background work and its retries: pass the context of the
// process, not one that ends when Sync returns.
func (a *ACME) Sync(ctx context.Context) {
	hosts := a.acmeHosts()
	a.mu.Lock()
	defer a.mu.Unlock()
	want := make(map[string]bool, len(hosts))
	changed := false
	for _, h := range hosts {
		want[h] = true
		st := a.hosts[h]
		if st == nil {
			st = &hostState{}
			a.hosts[h] = st
		}
		if st.gone {
			st.gone, changed = false, true
		}
		if st.ready || st.running || st.retry != nil {
			continue
		}
		a.startLocked(ctx, h, st)
	}
	for h, st := range a.hosts {
		if want[h] || st.gone {
			continue
		}
		if st.retry != nil {
			st.retry.Stop()
			st.retry = nil
		}
		changed = changed || st.ready
		if st.running {
			// Keep the state until the attempt ends, so that the host
			// coming back does not start a second one beside it.
			st.gone = true
			continue
		}
		delete(a.hosts, h)
	}
	if changed {
		a.publishLocked()
	}
}

// startLocked runs one attempt for host in the background.
func (a *ACME) startLocked(ctx context.Context, host string, st *hostState) {
	st.running = true
	st.retry = nil
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			a.finish(ctx, host, st, nil, ctx.Err())
			return
		}
		cert, err := a.obtain(ctx, host)
		<-a.sem
		a.finish(ctx, host, st, cert, err)
	}()
}

// finish records the outcome of an attempt and schedules the next one
// after a failure.
func (a *ACME) finish(ctx context.Context, host string, st *hostState, cert *stdtls.Certificate, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st.running = false
	if a.hosts[host] != st {
		return
	}
	if st.gone {
		delete(a.hosts, host) // the host left the table meanwhile
		return
	}
	if err == nil && cert == nil {
		err = errors.New("acme: no certificate and no error")
	}
	if err == nil {
		st.ready, st.failures = true, 0
		a.publishLocked()
		a.okOrders.Inc()
		fields := []zap.Field{zap.String("host", host)}
		if cert.Leaf != nil {
			fields = append(fields, zap.Time("not_after", cert.Leaf.NotAfter))
		}
		a.log.Info("acme certificate ready", fields...)
		return
	}
	if ctx.Err() != nil {
		return
	}
	st.failures++
	delay := backoff(st.failures)
	waiting := errors.Is(err, ErrNotLeader) || errors.Is(err, errNotCached)
	if waiting {
		// Reading the cache is cheap, and the leader may store the
		// certificate any moment (or this replica become the leader).
		delay = min(delay, maxWait)
	}
	if ra, ok := retryAfter(err); ok && ra > delay {
		delay = ra
	}
	st.retry = a.afterFunc(delay, func() { a.retryHost(ctx, host, st) })

	fields := []zap.Field{zap.String("host", host), zap.Error(err), zap.Duration("retry_in", delay)}
	switch {
	case waiting:
		a.log.Debug("waiting for the leader to store the acme certificate", fields...)
		return
	case strings.Contains(err.Error(), "acme/autocert: missing certificate"):
		// autocert remembers a failed order for a minute and answers with
		// this until then, without asking the CA; the failure itself was
		// logged when it happened.
		a.log.Debug("acme order still backing off after the previous failure", fields...)
		return
	}
	a.badOrder.Inc()
	var ae *acme.Error
	if errors.As(err, &ae) {
		fields = append(fields, zap.String("problem_type", ae.ProblemType), zap.String("detail", ae.Detail), zap.Int("status", ae.StatusCode))
	}
	a.log.Warn("acme certificate order failed", fields...)
}

// retryHost starts the attempt a failure scheduled, unless the host left
// the table or got its certificate meanwhile.
func (a *ACME) retryHost(ctx context.Context, host string, st *hostState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st.retry = nil
	if a.hosts[host] != st || st.gone || st.ready || st.running || ctx.Err() != nil {
		return
	}
	a.startLocked(ctx, host, st)
}

// publishLocked replaces the set of ready hosts handshakes read.
func (a *ACME) publishLocked() {
	ready := make(map[string]struct{}, len(a.hosts))
	for h, st := range a.hosts {
		if st.ready && !st.gone {
			ready[h] = struct{}{}
		}
	}
	a.ready.Store(&ready)
}

// backoff returns the wait before attempt failures+1.
func backoff(failures int) time.Duration {
	d := retryMin
	for i := 1; i < failures && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// retryAfter returns the wait a rate-limited CA asked for (RFC 8555 §6.6).
func retryAfter(err error) (time.Duration, bool) {
	var ae *acme.Error
	if !errors.As(err, &ae) {
		return 0, false
	}
	return acme.RateLimit(ae)
}
