package controller

import (
	"context"
	"net/netip"
	"reflect"
	"time"

	"go.uber.org/zap"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// The Gateway API half of the status writer: what Build found out about
// each GatewayClass, Gateway and HTTPRoute of ours (GatewayAPIStatus),
// written by the leader when it differs from what the object holds. A
// condition whose status did not change keeps the lastTransitionTime it
// has; an HTTPRoute's parent statuses written by other controllers are
// left as they are.

// WriteGatewayAPI makes the writer write the status of the Gateway API
// objects through gc; controllerName is the one Postern's route parent
// statuses carry (Options.GatewayControllerName). Call it before Run.
func (w *StatusWriter) WriteGatewayAPI(gc gatewayclient.Interface, controllerName string) {
	w.gateway = gc
	if controllerName == "" {
		controllerName = DefaultGatewayControllerName
	}
	w.gatewayController = gatewayv1.GatewayController(controllerName)
}

// syncGatewayAPI writes the status of every Gateway API object of s that
// st differs from. addrs are the addresses to publish on Gateways; nil
// keeps the ones they have (the address could not be resolved now).
func (w *StatusWriter) syncGatewayAPI(ctx context.Context, s Snapshot, st *GatewayAPIStatus, addrs []gatewayv1.GatewayStatusAddress, now metav1.Time) {
	classes := make(map[string]*ClassResult, len(st.Classes))
	for i := range st.Classes {
		classes[st.Classes[i].Name] = &st.Classes[i]
	}
	classAPI := w.gateway.GatewayV1().GatewayClasses()
	for _, gc := range s.GatewayClasses {
		res := classes[gc.Name]
		if res == nil {
			continue
		}
		written, err := writeStatus(ctx, gc,
			func(ctx context.Context) (*gatewayv1.GatewayClass, error) {
				return classAPI.Get(ctx, gc.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.GatewayClass) (*gatewayv1.GatewayClass, bool) {
				want := have.Status.DeepCopy()
				want.Conditions = mergeConditions(have.Status.Conditions, res.Conditions, now)
				want.SupportedFeatures = res.Features
				if equality.Semantic.DeepEqual(&have.Status, want) {
					return nil, false
				}
				c := have.DeepCopy()
				c.Status = *want
				return c, true
			},
			func(ctx context.Context, c *gatewayv1.GatewayClass) error {
				_, err := classAPI.UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		w.logWrite("gatewayclass", "", gc.Name, written, err)
	}

	gateways := make(map[types.NamespacedName]*GatewayResult, len(st.Gateways))
	for i := range st.Gateways {
		r := &st.Gateways[i]
		gateways[types.NamespacedName{Namespace: r.Namespace, Name: r.Name}] = r
	}
	for _, gw := range s.Gateways {
		res := gateways[types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}]
		if res == nil {
			continue
		}
		api := w.gateway.GatewayV1().Gateways(gw.Namespace)
		written, err := writeStatus(ctx, gw,
			func(ctx context.Context) (*gatewayv1.Gateway, error) {
				return api.Get(ctx, gw.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.Gateway) (*gatewayv1.Gateway, bool) {
				want := gatewayStatus(have, res, addrs, now)
				if equality.Semantic.DeepEqual(&have.Status, want) {
					return nil, false
				}
				c := have.DeepCopy()
				c.Status = *want
				return c, true
			},
			func(ctx context.Context, c *gatewayv1.Gateway) error {
				_, err := api.UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		w.logWrite("gateway", gw.Namespace, gw.Name, written, err)
	}

	httpResults, grpcResults := routeResults(st.HTTPRoutes), routeResults(st.GRPCRoutes)
	for _, hr := range s.HTTPRoutes {
		api := w.gateway.GatewayV1().HTTPRoutes(hr.Namespace)
		written, err := writeStatus(ctx, hr,
			func(ctx context.Context) (*gatewayv1.HTTPRoute, error) {
				return api.Get(ctx, hr.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.HTTPRoute) (*gatewayv1.HTTPRoute, bool) {
				parents, changed := w.routeStatus(have.Status.Parents, httpResults[types.NamespacedName{Namespace: have.Namespace, Name: have.Name}], now)
				if !changed {
					return nil, false
				}
				c := have.DeepCopy()
				c.Status.Parents = parents
				return c, true
			},
			func(ctx context.Context, c *gatewayv1.HTTPRoute) error {
				_, err := api.UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		w.logWrite("httproute", hr.Namespace, hr.Name, written, err)
	}
	for _, gr := range s.GRPCRoutes {
		api := w.gateway.GatewayV1().GRPCRoutes(gr.Namespace)
		written, err := writeStatus(ctx, gr,
			func(ctx context.Context) (*gatewayv1.GRPCRoute, error) {
				return api.Get(ctx, gr.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.GRPCRoute) (*gatewayv1.GRPCRoute, bool) {
				parents, changed := w.routeStatus(have.Status.Parents, grpcResults[types.NamespacedName{Namespace: have.Namespace, Name: have.Name}], now)
				if !changed {
					return nil, false
				}
				c := have.DeepCopy()
				c.Status.Parents = parents
				return c, true
			},
			func(ctx context.Context, c *gatewayv1.GRPCRoute) error {
				_, err := api.UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		w.logWrite("grpcroute", gr.Namespace, gr.Name, written, err)
	}
	policies := make(map[types.NamespacedName]*PolicyResult, len(st.BackendTLSPolicies))
	for i := range st.BackendTLSPolicies {
		r := &st.BackendTLSPolicies[i]
		policies[types.NamespacedName{Namespace: r.Namespace, Name: r.Name}] = r
	}
	for _, p := range s.BackendTLSPolicies {
		var ours []gatewayv1.PolicyAncestorStatus
		if r := policies[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}]; r != nil {
			ours = r.Ancestors
		}
		api := w.gateway.GatewayV1().BackendTLSPolicies(p.Namespace)
		written, err := writeStatus(ctx, p,
			func(ctx context.Context) (*gatewayv1.BackendTLSPolicy, error) {
				return api.Get(ctx, p.Name, metav1.GetOptions{})
			},
			func(have *gatewayv1.BackendTLSPolicy) (*gatewayv1.BackendTLSPolicy, bool) {
				ancestors := w.policyAncestors(have.Status.Ancestors, ours, now)
				if equality.Semantic.DeepEqual(have.Status.Ancestors, ancestors) {
					return nil, false
				}
				c := have.DeepCopy()
				c.Status.Ancestors = ancestors
				return c, true
			},
			func(ctx context.Context, c *gatewayv1.BackendTLSPolicy) error {
				_, err := api.UpdateStatus(ctx, c, metav1.UpdateOptions{})
				return err
			})
		w.logWrite("backendtlspolicy", p.Namespace, p.Name, written, err)
	}
}

// policyAncestors returns the ancestors a policy's status should list:
// other controllers' entries as they are, then ours, with the transition
// times of conditions that did not change.
func (w *StatusWriter) policyAncestors(have, ours []gatewayv1.PolicyAncestorStatus, now metav1.Time) []gatewayv1.PolicyAncestorStatus {
	return mergeEntries(w.gatewayController, have, ours, now, func(a *gatewayv1.PolicyAncestorStatus) (*gatewayv1.GatewayController, any, *[]metav1.Condition) {
		return &a.ControllerName, a.AncestorRef, &a.Conditions
	})
}

// mergeEntries returns the entries (route parents, policy ancestors) a
// status should hold: those of other controllers than ctrl as they are,
// then ours, each with the transition times of the conditions that did
// not change since the entry of the same reference in have. fields gives
// an entry's controller, reference and conditions.
func mergeEntries[E any](ctrl gatewayv1.GatewayController, have, ours []E, now metav1.Time,
	fields func(*E) (*gatewayv1.GatewayController, any, *[]metav1.Condition)) []E {
	out := make([]E, 0, len(have)+len(ours))
	for i := range have {
		if c, _, _ := fields(&have[i]); *c != ctrl {
			out = append(out, have[i])
		}
	}
	for _, e := range ours {
		c, ref, conds := fields(&e)
		*c = ctrl
		var had []metav1.Condition
		for i := range have {
			if hc, href, hconds := fields(&have[i]); *hc == ctrl && reflect.DeepEqual(href, ref) {
				had = *hconds
			}
		}
		*conds = mergeConditions(had, *conds, now)
		out = append(out, e)
	}
	return out
}

// routeResults indexes the results of one route kind by route.
func routeResults(results []RouteResult) map[types.NamespacedName]*RouteResult {
	out := make(map[types.NamespacedName]*RouteResult, len(results))
	for i := range results {
		out[types.NamespacedName{Namespace: results[i].Namespace, Name: results[i].Name}] = &results[i]
	}
	return out
}

// routeStatus returns the parents the status of a route should list,
// given its result (nil: none of ours), and whether they differ from have.
func (w *StatusWriter) routeStatus(have []gatewayv1.RouteParentStatus, res *RouteResult, now metav1.Time) ([]gatewayv1.RouteParentStatus, bool) {
	var ours []gatewayv1.RouteParentStatus
	if res != nil {
		ours = res.Parents
	}
	parents := w.routeParents(have, ours, now)
	return parents, !equality.Semantic.DeepEqual(have, parents)
}

// gatewayStatus returns the status gw should have: res, with the
// transition times of the conditions that did not change, and its own
// addresses or else addrs (nil: the addresses it has).
func gatewayStatus(gw *gatewayv1.Gateway, res *GatewayResult, addrs []gatewayv1.GatewayStatusAddress, now metav1.Time) *gatewayv1.GatewayStatus {
	want := gw.Status.DeepCopy()
	switch {
	case res.Addresses != nil:
		want.Addresses = res.Addresses // its own, from the pool
	case addrs != nil:
		want.Addresses = addrs
	}
	if len(want.Addresses) == 0 {
		want.Addresses = nil
	}
	want.Conditions = mergeConditions(gw.Status.Conditions, res.Conditions, now)
	want.Listeners = make([]gatewayv1.ListenerStatus, len(res.Listeners))
	for i, l := range res.Listeners {
		var had []metav1.Condition
		for _, h := range gw.Status.Listeners {
			if h.Name == l.Name {
				had = h.Conditions
			}
		}
		l.Conditions = mergeConditions(had, l.Conditions, now)
		want.Listeners[i] = l
	}
	return want
}

// statusTries bounds how often one status write is tried again after a
// conflict.
const statusTries = 3

// writeStatus writes the status want gives for an object, starting from
// the cached copy; want returns false when the object has that status
// already. On a conflict (the cache was behind the API server, often
// behind this writer's own last write) it reads the object afresh and
// tries again: the informers do not wake the source for changes of
// status alone, so nothing else would. written says whether a write went
// through.
func writeStatus[T any](ctx context.Context, cached T, get func(context.Context) (T, error), want func(T) (T, bool),
	update func(context.Context, T) error) (written bool, err error) {
	obj := cached
	for try := 1; ; try++ {
		next, change := want(obj)
		if !change {
			return false, nil
		}
		err := update(ctx, next)
		if err == nil {
			return true, nil
		}
		if !apierrors.IsConflict(err) || try == statusTries {
			return false, err
		}
		if obj, err = get(ctx); err != nil {
			return false, err
		}
	}
}

// routeParents returns the parent statuses a route should hold: those of
// other controllers as they are, then ours (with the transition times of
// the conditions that did not change). A route that is no longer ours
// loses only our entries.
func (w *StatusWriter) routeParents(have, ours []gatewayv1.RouteParentStatus, now metav1.Time) []gatewayv1.RouteParentStatus {
	// The API requires the list: empty, not null. (Semantic equality
	// holds an empty list and none the same.)
	return mergeEntries(w.gatewayController, have, ours, now, func(p *gatewayv1.RouteParentStatus) (*gatewayv1.GatewayController, any, *[]metav1.Condition) {
		return &p.ControllerName, p.ParentRef, &p.Conditions
	})
}

// mergeConditions returns want with each condition's lastTransitionTime
// taken from have when its status did not change, and now when it did.
func mergeConditions(have, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := make([]metav1.Condition, len(want))
	for i, c := range want {
		c.LastTransitionTime = now
		for _, h := range have {
			if h.Type == c.Type && h.Status == c.Status {
				c.LastTransitionTime = h.LastTransitionTime
			}
		}
		out[i] = c
	}
	return out
}

// gatewayAddresses turns the addresses published in Ingress status into a
// Gateway's status addresses.
func gatewayAddresses(lb []networkingv1.IngressLoadBalancerIngress) []gatewayv1.GatewayStatusAddress {
	out := []gatewayv1.GatewayStatusAddress{}
	for _, a := range lb {
		switch {
		case a.IP != "":
			if _, err := netip.ParseAddr(a.IP); err == nil {
				out = append(out, gatewayv1.GatewayStatusAddress{Type: ptr.To(gatewayv1.IPAddressType), Value: a.IP})
			}
		case a.Hostname != "":
			out = append(out, gatewayv1.GatewayStatusAddress{Type: ptr.To(gatewayv1.HostnameAddressType), Value: a.Hostname})
		}
	}
	return out
}

// logWrite logs the outcome of one status write.
func (w *StatusWriter) logWrite(kind, ns, name string, written bool, err error) {
	fields := []zap.Field{zap.String("kind", kind), zap.String("namespace", ns), zap.String("name", name)}
	switch {
	case err == nil && written:
		w.logger.Info(kind+" status updated", fields...)
	case err == nil:
	case apierrors.IsNotFound(err):
		// Deleted meanwhile; its deletion is on its way.
		w.logger.Debug(kind+" status update raced", append(fields, zap.Error(err))...)
	default:
		w.logger.Error("cannot update "+kind+" status", append(fields, zap.Error(err))...)
	}
}

// statusNow is the lastTransitionTime of a condition that changes now: the
// API keeps seconds, so a finer time would never compare equal again.
func statusNow() metav1.Time { return metav1.NewTime(time.Now().Truncate(time.Second)) }
