package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// config is the parsed command line.
type config struct {
	manifests       string
	kubeconfig      string
	namespace       string
	watchNamespaces []string
	publishService  string
	publishAddrs    []string
	electionID      string
	httpAddr        string
	httpsAddr       string
	httpsPort       int
	defaultCert     string
	acmeDirectory   string
	acmeEmail       string
	acmeCABundle    string
	acmeCacheDir    string
	metricsAddr     string
	ingressClass    string
	controllerClass string
	gatewayCtrl     string
	watchGateway    bool
	gatewayPool     netip.Prefix
	annotationsPfx  string
	limitStatus     int
	globalAuth      *route.ExternalAuth
	allowedHeaders  []string
	sslPassthrough  bool
	// The --global-auth-* flags, parsed into globalAuth by validate.
	globalAuthURL, globalAuthMethod, globalAuthSignin, globalAuthHeaders string
	logLevel                                                             zapcore.Level
	logFormat                                                            string
	accessLog                                                            bool
	accessLogSample                                                      float64
	enablePprof                                                          bool
	shutdownGrace                                                        time.Duration
	shutdownDelay                                                        time.Duration
	maxHeaderBytes                                                       int
	readHeader                                                           time.Duration
	idle                                                                 time.Duration
	dialTimeout                                                          time.Duration
	responseTimeout                                                      time.Duration
	trustedProxies                                                       *pipeline.TrustedProxies
	proxyProtocol                                                        bool
	// proxyProtocolFrom narrows proxyProtocol to these peers.
	proxyProtocolFrom *pipeline.TrustedProxies
	fastPath          bool
	showVersion       bool
}

// errHelp is returned when the user asked for --help; usage went to stdout.
var errHelp = errors.New("help requested")

// parseFlags parses args, then fills every flag not given on the command
// line from its POSTERN_* environment variable (--http-addr from
// POSTERN_HTTP_ADDR). Errors are one line, fit to print as they are.
func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (*config, error) {
	c := &config{logLevel: zapcore.InfoLevel}
	fs := flag.NewFlagSet("postern", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.manifests, "manifests", "", "standalone mode: serve the Ingresses, Services, EndpointSlices and Secrets in this folder (recursively), re-read on change")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to watch (default: in-cluster, else $KUBECONFIG)")
	fs.StringVar(&c.namespace, "namespace", "", "namespace of Postern itself, for its leader-election Lease (default: $POD_NAMESPACE, else the service account's, else default)")
	fs.Func("watch-namespace", "comma-separated namespaces to watch (default: all)", func(v string) error {
		c.watchNamespaces = splitList(v)
		return nil
	})
	fs.StringVar(&c.publishService, "publish-service", "", "namespace/name of the Service whose address goes into Ingress status")
	fs.Func("publish-status-address", "comma-separated fixed addresses for Ingress status, instead of --publish-service", func(v string) error {
		c.publishAddrs = splitList(v)
		return nil
	})
	fs.StringVar(&c.electionID, "election-id", "postern-leader", "name of the Lease used for leader election")
	fs.StringVar(&c.httpAddr, "http-addr", ":8080", "plain HTTP listener")
	fs.StringVar(&c.httpsAddr, "https-addr", ":8443", "TLS listener")
	fs.IntVar(&c.httpsPort, "https-redirect-port", 443, "port clients reach HTTPS on, for HTTP to HTTPS redirects (443 is left out of the URL)")
	fs.StringVar(&c.defaultCert, "default-ssl-certificate", "", "namespace/name of the TLS Secret served when no other certificate fits (default: a self-signed one made at start)")
	fs.StringVar(&c.acmeDirectory, "acme-directory", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory URL for Ingresses annotated postern.dev/acme: \"true\"; empty turns ACME off")
	fs.StringVar(&c.acmeEmail, "acme-email", "", "contact email for the ACME account")
	fs.StringVar(&c.acmeCABundle, "acme-ca-bundle", "", "PEM file of CA certificates the ACME client trusts besides the system's (for a private or test ACME server)")
	fs.StringVar(&c.acmeCacheDir, "acme-cache-dir", "", "standalone mode: folder for ACME accounts and certificates (default: the user's cache folder/postern/acme); in a cluster they are Secrets in Postern's namespace")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":10254", "listener for /metrics, /healthz, /readyz and /debug/routes")
	fs.StringVar(&c.ingressClass, "ingress-class", controller.DefaultIngressClass, "IngressClass name served")
	fs.StringVar(&c.controllerClass, "controller-class", controller.DefaultControllerClass, "spec.controller of the IngressClasses that belong to Postern")
	fs.StringVar(&c.gatewayCtrl, "gateway-controller-name", controller.DefaultGatewayControllerName, "spec.controllerName of the Gateway API GatewayClasses Postern serves")
	fs.BoolVar(&c.watchGateway, "watch-gateway-api", true, "cluster mode: watch the Gateway API kinds (gateway.networking.k8s.io/v1) when their CRDs are installed, and write their status")
	fs.Func("gateway-addresses", "CIDR of addresses for Gateways of their own: each Gateway gets one and its listeners listen there on their own ports (the pool must be routed to this host); default: every Gateway shares --http-addr and --https-addr", func(v string) error {
		p, err := netip.ParsePrefix(strings.TrimSpace(v))
		switch {
		case err != nil:
			return fmt.Errorf("want a network like 203.0.113.0/24: %w", err)
		case p != p.Masked():
			return fmt.Errorf("%s has host bits set; the network is %s", p, p.Masked())
		case p.Addr().BitLen()-p.Bits() < 2:
			return fmt.Errorf("%s has no address for a Gateway; give a /30 or larger (a /126 for IPv6)", p)
		}
		c.gatewayPool = p
		return nil
	})
	fs.StringVar(&c.annotationsPfx, "annotations-prefix", controller.DefaultAnnotationsPrefix, "prefix of the ingress-nginx annotations, as ingress-nginx's flag")
	fs.IntVar(&c.limitStatus, "limit-status-code", 503, "status of the answer to requests a rate limit refuses (ingress-nginx's limit-req-status-code and limit-conn-status-code; 429 is the usual other)")
	fs.StringVar(&c.globalAuthURL, "global-auth-url", "", "external auth service of every Ingress without an auth-url of its own, unless it sets enable-global-auth: \"false\" (ingress-nginx's global-auth-url; nginx variables allowed)")
	fs.StringVar(&c.globalAuthMethod, "global-auth-method", "", "with --global-auth-url: the auth request's method (default GET)")
	fs.StringVar(&c.globalAuthSignin, "global-auth-signin", "", "with --global-auth-url: where a 401 of the auth service sends the client (302, with rd=<the original URL>)")
	fs.StringVar(&c.globalAuthHeaders, "global-auth-response-headers", "", "with --global-auth-url: comma list of the auth service's answer fields sent on to the backends")
	fs.Func("global-allowed-response-headers", "comma list of the only response fields a custom-headers ConfigMap may set (ingress-nginx's global-allowed-response-headers); default: any but the proxy's own", func(v string) error {
		c.allowedHeaders = nil
		for h := range strings.SplitSeq(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				if !validFieldName(h) {
					return fmt.Errorf("%q is not a header name", h)
				}
				c.allowedHeaders = append(c.allowedHeaders, http.CanonicalHeaderKey(h))
			}
		}
		return nil
	})
	fs.BoolVar(&c.sslPassthrough, "enable-ssl-passthrough", false, "honour ingress-nginx's ssl-passthrough: the TLS connections of such hosts go unopened to their backend (the ClientHello of every HTTPS connection is read first)")
	fs.TextVar(&c.logLevel, "log-level", zapcore.InfoLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or console")
	fs.BoolVar(&c.accessLog, "access-log", true, "write an access-log line per request to stdout, in --log-format; false turns it off")
	fs.Float64Var(&c.accessLogSample, "access-log-sample", 1, "fraction of requests (0 to 1) in the access log; responses of 500 and more are always logged")
	fs.BoolVar(&c.enablePprof, "enable-pprof", false, "serve Go's profiles under /debug/pprof/ on --metrics-addr")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 25*time.Second, "on SIGTERM, how long in-flight requests get to finish")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, how long to keep accepting new connections after /readyz turns 503, so that whatever polls it stops sending first (in Kubernetes the chart's preStop sleep does this)")
	fs.IntVar(&c.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted; larger ones get 431")
	fs.DurationVar(&c.readHeader, "read-header-timeout", 10*time.Second, "time a client has to send its request headers")
	fs.DurationVar(&c.idle, "idle-timeout", 75*time.Second, "how long an idle client keep-alive connection is kept")
	fs.DurationVar(&c.dialTimeout, "upstream-connect-timeout", 5*time.Second, "time to connect to a backend before answering 502")
	fs.DurationVar(&c.responseTimeout, "upstream-response-timeout", 60*time.Second, "time a backend has to start its response before answering 504")
	fs.Func("trusted-proxies", "comma-separated CIDRs or addresses of proxies in front whose X-Forwarded-*, X-Real-IP and Forwarded headers are believed (default: none; a client's own are replaced)", addressList(&c.trustedProxies))
	fs.Func("proxy-protocol-from", "with --proxy-protocol: comma-separated CIDRs or addresses of the load balancers that send the header; only they must and may, and other peers are served as they are, their own address the client's (default: every peer must send it)", addressList(&c.proxyProtocolFrom))
	fs.BoolVar(&c.proxyProtocol, "proxy-protocol", false, "require a PROXY protocol (v1 or v2) header on every connection to --http-addr and --https-addr, as an L4 load balancer in front sends; its source address is the client's")
	fs.BoolVar(&c.fastPath, "http1-fast-path", true, "serve plain HTTP/1.1 requests with Postern's own HTTP/1.1 engine (a fifth of the CPU per request); false sends every request through Go's net/http")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: postern [flags]\n\nFlags (each may also be set as POSTERN_<NAME>, e.g. POSTERN_HTTP_ADDR):")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are --flags)", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		name := "POSTERN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %w", v, name, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	return c, c.validate()
}

func (c *config) validate() error {
	switch {
	case c.logFormat != "json" && c.logFormat != "console":
		return fmt.Errorf("invalid value %q for --log-format: want json or console", c.logFormat)
	case !(c.accessLogSample >= 0 && c.accessLogSample <= 1): // NaN too
		return fmt.Errorf("invalid value %g for --access-log-sample: want a fraction from 0 to 1", c.accessLogSample)
	case c.maxHeaderBytes < 1024:
		return fmt.Errorf("invalid value %d for --max-header-bytes: want at least 1024", c.maxHeaderBytes)
	case c.shutdownGrace < 0:
		return fmt.Errorf("invalid value %s for --shutdown-grace: want a positive duration", c.shutdownGrace)
	case c.shutdownDelay < 0:
		return fmt.Errorf("invalid value %s for --shutdown-delay: want zero or a positive duration", c.shutdownDelay)
	case c.proxyProtocolFrom.String() != "" && !c.proxyProtocol:
		return errors.New("--proxy-protocol-from needs --proxy-protocol")
	case c.limitStatus < 400 || c.limitStatus > 599:
		return fmt.Errorf("invalid value %d for --limit-status-code: want a status from 400 to 599", c.limitStatus)
	case c.ingressClass == "":
		return errors.New("--ingress-class must not be empty")
	case c.controllerClass == "":
		return errors.New("--controller-class must not be empty")
	case c.gatewayCtrl == "" || !strings.Contains(c.gatewayCtrl, "/"):
		return errors.New("--gateway-controller-name must be a domain-prefixed path, like postern.dev/gateway-controller")
	}
	if err := checkAnnotationsPrefix(c.annotationsPfx); err != nil {
		return err
	}
	var err error
	if c.globalAuth, err = controller.ParseGlobalAuth(c.globalAuthURL, c.globalAuthMethod, c.globalAuthSignin, c.globalAuthHeaders); err != nil {
		return fmt.Errorf("invalid global auth: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read-header-timeout", c.readHeader}, {"idle-timeout", c.idle}, {"upstream-connect-timeout", c.dialTimeout}, {"upstream-response-timeout", c.responseTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("invalid value %s for --%s: want a positive duration", d.v, d.name)
		}
	}
	if c.publishService != "" && len(c.publishAddrs) > 0 {
		return errors.New("--publish-service and --publish-status-address are exclusive: set one")
	}
	if c.publishService != "" {
		if ns, name, ok := strings.Cut(c.publishService, "/"); !ok || ns == "" || name == "" {
			return fmt.Errorf("invalid value %q for --publish-service: want namespace/name", c.publishService)
		}
	}
	if c.defaultCert != "" {
		if ns, name, ok := strings.Cut(c.defaultCert, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("invalid value %q for --default-ssl-certificate: want namespace/name", c.defaultCert)
		}
	}
	if c.httpsPort < 1 || c.httpsPort > 65535 {
		return fmt.Errorf("invalid value %d for --https-redirect-port: want a port number", c.httpsPort)
	}
	if c.acmeDirectory != "" {
		if u, err := url.Parse(c.acmeDirectory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("invalid value %q for --acme-directory: want an https:// URL", c.acmeDirectory)
		}
	}
	if c.acmeCABundle != "" {
		if _, err := os.Stat(c.acmeCABundle); err != nil {
			return fmt.Errorf("--acme-ca-bundle: %w", err)
		}
	}
	if c.manifests != "" && c.kubeconfig != "" {
		return errors.New("--manifests and --kubeconfig are exclusive: standalone mode reads no cluster")
	}
	if c.manifests != "" {
		return checkManifestsDir(c.manifests)
	}
	return nil
}

// checkManifestsDir checks the value of --manifests.
func checkManifestsDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--manifests: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--manifests %s: not a directory", dir)
	}
	return nil
}

// parseCommand parses the flags of the subcommand name ("routes") from
// args. --help prints usage (what the command does) and the flags to
// stdout and returns errHelp; other errors are one line that starts with
// the name.
func parseCommand(fs *flag.FlagSet, args []string, stdout io.Writer, name, usage string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: postern %s [flags]\n\n%s\n\nFlags:\n", name, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return errHelp
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (all settings are --flags)", name, fs.Arg(0))
	}
	return nil
}

// checkAnnotationsPrefix checks the value of --annotations-prefix.
func checkAnnotationsPrefix(v string) error {
	if v == "" || strings.ContainsAny(v, "/ ") {
		return fmt.Errorf("invalid value %q for --annotations-prefix: want a DNS name like %s", v, controller.DefaultAnnotationsPrefix)
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// addressList parses a flag's comma-separated CIDRs and addresses into dst.
func addressList(dst **pipeline.TrustedProxies) func(string) error {
	return func(v string) error {
		t, err := pipeline.ParseTrustedProxies(splitList(v))
		if err != nil {
			return err
		}
		*dst = t
		return nil
	}
}

// validFieldName reports whether s is a header field name (an RFC 9110
// token).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}
