package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// maxEndpointsShown is how many endpoints a row of `postern routes` lists
// before it says how many more there are.
const maxEndpointsShown = 4

// runRoutes is `postern routes`: it fetches /debug/routes from a running
// Postern's --metrics-addr and prints the routing table for a person, one
// route per row, with the Ingress that declared it.
func runRoutes(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("postern routes", flag.ContinueOnError)
	addr := fs.String("metrics-addr", "127.0.0.1:10254", "the --metrics-addr of the running Postern (HOST:PORT; an empty host means 127.0.0.1)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	if err := parseCommand(fs, args, stdout, "routes", "Prints the live routing table of a running Postern."); err != nil {
		return err
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "metrics-addr" })
	if v := getenv("POSTERN_METRICS_ADDR"); !set && v != "" {
		*addr = v
	}
	if *timeout <= 0 {
		return fmt.Errorf("routes: invalid value %s for --timeout: want a positive duration", *timeout)
	}
	u, err := routesURL(*addr)
	if err != nil {
		return err
	}
	t, err := fetchTable(ctx, u, *timeout)
	if err != nil {
		return err
	}
	return printTable(stdout, t)
}

// routesURL is the /debug/routes URL of a --metrics-addr.
func routesURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("routes: invalid value %q for --metrics-addr: want HOST:PORT", addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // the address the server listens on, not one to dial
	}
	return "http://" + net.JoinHostPort(host, port) + "/debug/routes", nil
}

func fetchTable(ctx context.Context, u string, timeout time.Duration) (*route.Table, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	// Never through an HTTP proxy of the environment: this is a local
	// admin port.
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("routes: is postern running with --metrics-addr there? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("routes: GET %s: %s", u, resp.Status)
	}
	var t route.Table
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&t); err != nil {
		return nil, fmt.Errorf("routes: GET %s: not a routing table: %w", u, err)
	}
	return &t, nil
}

// printTable writes t as aligned columns: HOST PATH TYPE BACKEND ENDPOINTS
// SOURCE, in match order, the default backend last; then the TLS hosts, if
// any.
func printTable(w io.Writer, t *route.Table) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPATH\tTYPE\tBACKEND\tENDPOINTS\tSOURCE")
	for _, vh := range t.VirtualHosts {
		host := vh.Host
		if host == "" {
			host = "*" // rules without a host: every host
		}
		for _, r := range vh.Routes {
			printRoute(tw, host, r.Path+conditions(&r.Match), string(r.PathType), r)
		}
	}
	if r := t.Default; r != nil {
		printRoute(tw, "(default)", "-", "-", r)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	if len(t.TLS) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "TLS HOST\tCERTIFICATE\tEXPIRES\tREDIRECT\tSOURCE")
		for _, h := range t.TLS {
			cert, expires := "default", "-"
			switch {
			case h.Certificate != nil:
				cert = "secret " + h.Certificate.Source.String()
				expires = h.Certificate.NotAfter.UTC().Format(time.DateOnly)
				if h.ACME {
					cert = "acme"
				}
			case h.ACME:
				cert = "acme (pending)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", h.Host, cert, expires, h.Redirect, h.Source)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	return nil
}

// printRoute writes the rows of r: one per backend, the weight after the
// backend's name when there are several, "(canary)" after a canary's.
func printRoute(w io.Writer, host, path, pathType string, r *route.Route) {
	if len(r.Backends) == 0 {
		fmt.Fprintf(w, "%s\t%s\t%s\t-\tnone\t%s\n", host, path, pathType, r.Source)
	}
	for _, wb := range r.Backends {
		name := backendName(wb.Backend)
		switch {
		case wb.Backend == r.CanaryBackend():
			name += " (canary)"
		case len(r.Backends) > 1 && r.Canary == nil:
			name += " weight " + strconv.Itoa(int(wb.Weight))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", host, path, pathType, name, endpoints(wb.Backend), r.Source)
	}
}

// conditions describes the method, header and query conditions of m, as
// " [GET X-Env=canary ?v=2]"; "" when it has none.
func conditions(m *route.Match) string {
	if m.Conditions() == 0 {
		return ""
	}
	var parts []string
	if m.Method != "" {
		parts = append(parts, m.Method)
	}
	field := func(prefix string, f route.FieldMatch) string {
		op := "="
		if f.Type == route.MatchRegularExpression {
			op = "~"
		}
		return prefix + f.Name + op + f.Value
	}
	for _, f := range m.Headers {
		parts = append(parts, field("", f))
	}
	for _, f := range m.Query {
		parts = append(parts, field("?", f))
	}
	return " [" + strings.Join(parts, " ") + "]"
}

// backendName is "namespace/service:port", and the protocol when it is not
// plain HTTP.
func backendName(be *route.Backend) string {
	if be == nil {
		return "-"
	}
	name := be.Key
	if be.Protocol != "" && be.Protocol != route.ProtocolHTTP {
		name += " (" + string(be.Protocol) + ")"
	}
	return name
}

// endpoints lists a backend's endpoint addresses, the first few of them;
// "none" when there are none, with the reason when the backend cannot be
// resolved.
func endpoints(be *route.Backend) string {
	if be == nil || len(be.Endpoints) == 0 {
		if be != nil && be.Unavailable != "" {
			return "none (" + be.Unavailable + ")"
		}
		return "none"
	}
	var b strings.Builder
	for i, ep := range be.Endpoints {
		if i == maxEndpointsShown {
			b.WriteString(" +" + strconv.Itoa(len(be.Endpoints)-i) + " more")
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ep.Address)
		if ep.Terminating {
			b.WriteString("(terminating)")
		}
	}
	return b.String()
}
