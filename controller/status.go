package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// StatusOptions say where the address written into Ingress status comes
// from. At most one of the two is set; neither means no status is written.
type StatusOptions struct {
	// PublishService is "namespace/name" of the Service fronting Postern
	// (--publish-service); its load-balancer addresses, else its external
	// IPs, else its cluster IP are published, as ingress-nginx does.
	PublishService string
	// PublishAddresses are fixed IPs or host names (--publish-status-address).
	PublishAddresses []string
}

// StatusWriter writes status.loadBalancer.ingress of the Ingresses Postern
// serves, and clears it on the ones it stopped serving. It runs on its own
// goroutine so that slow API writes never delay a routing table, and only
// writes while leading.
type StatusWriter struct {
	client  kubernetes.Interface
	opts    StatusOptions
	build   Options
	leading func() bool
	logger  *zap.Logger
	pending chan statusWork

	// gateway, when set, writes the Gateway API status (WriteGatewayAPI).
	gateway           gatewayclient.Interface
	gatewayController gatewayv1.GatewayController
}

// statusWork is one snapshot to write status for, with what Build found
// about its Gateway API objects (nil: none).
type statusWork struct {
	snap    Snapshot
	gateway *GatewayAPIStatus
}

// NewStatusWriter returns a writer; build gives the class settings that
// decide which Ingresses are ours.
func NewStatusWriter(client kubernetes.Interface, opts StatusOptions, build Options, leading func() bool, logger *zap.Logger) *StatusWriter {
	return &StatusWriter{client: client, opts: opts, build: build, leading: leading, logger: logger, pending: make(chan statusWork, 1)}
}

// Enabled reports whether there is an address to publish in Ingress
// status.
func (w *StatusWriter) Enabled() bool {
	return w.opts.PublishService != "" || len(w.opts.PublishAddresses) > 0
}

// Update hands the writer the latest snapshot and what Build found about
// its Gateway API objects (nil: nothing); it never blocks, and a snapshot
// not written yet is replaced by the newer one.
func (w *StatusWriter) Update(s Snapshot, gateway *GatewayAPIStatus) {
	if !w.Enabled() && (w.gateway == nil || gateway == nil) {
		return
	}
	work := statusWork{snap: s, gateway: gateway}
	for {
		select {
		case w.pending <- work:
			return
		default:
		}
		select {
		case <-w.pending:
		default:
		}
	}
}

// Run writes status for each snapshot handed to Update, until ctx is done.
func (w *StatusWriter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case work := <-w.pending:
			if w.leading == nil || w.leading() {
				w.sync(ctx, work.snap)
				if w.gateway != nil && work.gateway != nil {
					w.syncGatewayAPI(ctx, work.snap, work.gateway, w.gatewayAddrs(ctx, work.snap), statusNow())
				}
			}
		}
	}
}

// gatewayAddrs returns the addresses Gateways publish: the published ones
// of Ingress status; none when nothing is published; nil (keep what is
// there) when they cannot be resolved now.
func (w *StatusWriter) gatewayAddrs(ctx context.Context, s Snapshot) []gatewayv1.GatewayStatusAddress {
	if !w.Enabled() {
		return []gatewayv1.GatewayStatusAddress{}
	}
	addrs, err := w.addresses(ctx, s)
	if err != nil {
		w.logger.Warn("cannot resolve the address to publish in Gateway status", zap.Error(err))
		return nil
	}
	return gatewayAddresses(addrs)
}

func (w *StatusWriter) sync(ctx context.Context, s Snapshot) {
	if !w.Enabled() {
		return
	}
	addrs, err := w.addresses(ctx, s)
	if err != nil {
		w.logger.Warn("cannot resolve the address to publish in Ingress status", zap.Error(err))
		return
	}
	if len(addrs) == 0 {
		w.logger.Debug("no address to publish yet")
		return
	}
	cls := newClassifier(s.IngressClasses, w.build)
	for _, ing := range s.Ingresses {
		ours := cls.ours(ing)
		if !ours && !sameAddresses(ing.Status.LoadBalancer.Ingress, addrs) {
			continue // never ours, or another writer's status
		}
		api := w.client.NetworkingV1().Ingresses(ing.Namespace)
		written, err := writeStatus(ctx, ing,
			func(ctx context.Context) (*networkingv1.Ingress, error) {
				return api.Get(ctx, ing.Name, metav1.GetOptions{})
			},
			func(have *networkingv1.Ingress) (*networkingv1.Ingress, bool) {
				var want []networkingv1.IngressLoadBalancerIngress
				if ours {
					want = addrs
				} else if !sameAddresses(have.Status.LoadBalancer.Ingress, addrs) {
					return nil, false // someone else's status now
				}
				// Not ours any more (want nil): clear what we wrote.
				if sameAddresses(have.Status.LoadBalancer.Ingress, want) {
					return nil, false
				}
				c := have.DeepCopy()
				c.Status.LoadBalancer.Ingress = want
				return c, true
			},
			func(ctx context.Context, c *networkingv1.Ingress) error {
				_, err := api.UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		w.logWrite("ingress", ing.Namespace, ing.Name, written, err)
	}
}

// addresses returns the status entries to publish, sorted.
func (w *StatusWriter) addresses(ctx context.Context, s Snapshot) ([]networkingv1.IngressLoadBalancerIngress, error) {
	if len(w.opts.PublishAddresses) > 0 {
		return lbEntries(w.opts.PublishAddresses), nil
	}
	ns, name, ok := strings.Cut(w.opts.PublishService, "/")
	if !ok {
		return nil, fmt.Errorf("--publish-service %q: want namespace/name", w.opts.PublishService)
	}
	var svc *corev1.Service
	for _, s := range s.Services {
		if s.Namespace == ns && s.Name == name {
			svc = s
			break
		}
	}
	if svc == nil {
		// Not in a watched namespace: ask the API server.
		var err error
		svc, err = w.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get publish service %s/%s: %w", ns, name, err)
		}
	}
	return ServiceAddresses(svc), nil
}

// ServiceAddresses are the addresses a Service is reached at from outside,
// best first: its load balancer's, else its external IPs, else its cluster
// IP (what ingress-nginx publishes for a ClusterIP or NodePort Service).
func ServiceAddresses(svc *corev1.Service) []networkingv1.IngressLoadBalancerIngress {
	var out []networkingv1.IngressLoadBalancerIngress
	for _, lb := range svc.Status.LoadBalancer.Ingress {
		if lb.IP != "" || lb.Hostname != "" {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: lb.IP, Hostname: lb.Hostname})
		}
	}
	if len(out) == 0 {
		out = lbEntries(svc.Spec.ExternalIPs)
	}
	if len(out) == 0 && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		out = lbEntries([]string{svc.Spec.ClusterIP})
	}
	sortLB(out)
	return out
}

func lbEntries(addrs []string) []networkingv1.IngressLoadBalancerIngress {
	var out []networkingv1.IngressLoadBalancerIngress
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, err := netip.ParseAddr(a); err == nil {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: a})
		} else {
			out = append(out, networkingv1.IngressLoadBalancerIngress{Hostname: a})
		}
	}
	sortLB(out)
	return out
}

// sortLB puts IPs first, then host names, each sorted.
func sortLB(l []networkingv1.IngressLoadBalancerIngress) {
	key := func(e networkingv1.IngressLoadBalancerIngress) string {
		if e.IP != "" {
			return "0" + e.IP
		}
		return "1" + e.Hostname
	}
	slices.SortFunc(l, func(a, b networkingv1.IngressLoadBalancerIngress) int {
		return strings.Compare(key(a), key(b))
	})
}

// sameAddresses compares the IPs and host names of two status lists,
// ignoring order and port details.
func sameAddresses(a, b []networkingv1.IngressLoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(l []networkingv1.IngressLoadBalancerIngress) []string {
		k := make([]string, len(l))
		for i, e := range l {
			k[i] = e.IP + "/" + e.Hostname
		}
		slices.Sort(k)
		return k
	}
	return slices.Equal(key(a), key(b))
}
