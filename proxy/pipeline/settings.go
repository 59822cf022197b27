package pipeline

import (
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// settings is the route policy of the postern.dev/timeout-read,
// timeout-idle and retries annotations: the settings of the forward, where
// the route changes the proxy's defaults.
type settings struct {
	read, idle, send time.Duration // zero: the default
	retries          int
	retryTimeout     time.Duration
	request, attempt time.Duration // zero: none
}

// routeSettings returns the settings policy of rt, if it changes any
// default.
func routeSettings(rt *route.Route) (settings, bool) {
	p := rt.Policy
	if p == nil {
		return settings{}, false
	}
	s := settings{read: time.Duration(p.ReadTimeout), idle: time.Duration(p.IdleTimeout), send: time.Duration(p.SendTimeout), retries: p.RetryBudget(),
		retryTimeout: time.Duration(p.RetryTimeout), request: time.Duration(p.RequestTimeout), attempt: time.Duration(p.AttemptTimeout)}
	return s, s.read > 0 || s.idle > 0 || s.send > 0 || s.retries != route.DefaultRetries || s.retryTimeout > 0 || s.request > 0 || s.attempt > 0
}

func (s settings) Request(x *Exchange) {
	if s.read > 0 {
		x.Settings.ReadTimeout = s.read
	}
	x.Settings.IdleTimeout = s.idle
	x.Settings.SendTimeout = s.send
	x.Settings.Retries = s.retries
	x.Settings.RetryTimeout = s.retryTimeout
	if s.request > 0 {
		x.Settings.Deadline = time.Now().Add(s.request)
	}
	x.Settings.AttemptTimeout = s.attempt
}
