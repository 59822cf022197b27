package tls

import (
	"github.com/prometheus/client_golang/prometheus"
)

var expiryDesc = prometheus.NewDesc(
	"postern_tls_certificate_expiry_timestamp_seconds",
	"When a served certificate expires, in seconds since the Unix epoch. Secret certificates (and the default one) are labelled by secret, ACME certificates by host.",
	[]string{"secret", "host"}, nil,
)

// expiryCollector reports the expiry of every certificate the store can
// serve, computed from the live table at scrape time so that it never lags
// behind a table swap.
type expiryCollector struct{ s *Store }

// Describe implements prometheus.Collector.
func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect implements prometheus.Collector.
func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	type labels struct{ secret, host string }
	seen := make(map[labels]float64)
	add := func(l labels, v float64) {
		// Two certificates parsed from the same Secret (or the default
		// Secret also named by an Ingress) are one series: report the
		// earlier expiry, the one that needs attention first.
		if old, ok := seen[l]; !ok || v < old {
			seen[l] = v
		}
	}
	if t := c.s.table(); t != nil {
		for _, th := range t.TLS {
			if cert := th.Certificate; cert != nil {
				add(labels{secret: cert.Source.String()}, float64(cert.NotAfter.Unix()))
			}
		}
	}
	if d := c.s.def.Load(); d != nil {
		add(labels{secret: d.Source.String()}, float64(d.NotAfter.Unix()))
	}
	if c.s.acme != nil {
		for _, a := range c.s.acme.Certificates() {
			add(labels{host: a.Host}, float64(a.NotAfter.Unix()))
		}
	}
	for l, v := range seen {
		m, err := prometheus.NewConstMetric(expiryDesc, prometheus.GaugeValue, v, l.secret, l.host)
		if err != nil {
			// Only a label that is not valid UTF-8 gets here.
			m = prometheus.NewInvalidMetric(expiryDesc, err)
		}
		ch <- m
	}
}
