package controller

import (
	networkingv1 "k8s.io/api/networking/v1"
)

// annotationLegacyClass is the annotation that named an Ingress's class
// before spec.ingressClassName existed; it is still honoured when the field
// is not set.
const annotationLegacyClass = "kubernetes.io/ingress.class"

// classifier decides which Ingresses are ours.
type classifier struct {
	// names holds the class names that are ours: --ingress-class, and every
	// IngressClass whose spec.controller is --controller-class.
	names map[string]bool
	// isDefault is true when one of our IngressClasses is marked as the
	// cluster's default class, so that Ingresses without a class are ours.
	isDefault bool
}

// newClassifier reads the IngressClasses. The result does not depend on
// their order, nor on copies of one name.
func newClassifier(classes []*networkingv1.IngressClass, opts Options) classifier {
	name, controller := opts.IngressClass, opts.ControllerClass
	if name == "" {
		name = DefaultIngressClass
	}
	if controller == "" {
		controller = DefaultControllerClass
	}
	c := classifier{names: map[string]bool{name: true}}
	for _, ic := range classes {
		if ic != nil && ic.Name != "" && ic.Spec.Controller == controller {
			c.names[ic.Name] = true
		}
	}
	c.isDefault = c.defaultAmong(classes)
	return c
}

// defaultAmong reports whether one of classes is ours and marked as the
// cluster's default class.
func (c classifier) defaultAmong(classes []*networkingv1.IngressClass) bool {
	for _, ic := range classes {
		if ic != nil && c.names[ic.Name] && ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" {
			return true
		}
	}
	return false
}

// IngressesOfClass returns the Ingresses of ings whose class is name, as
// Postern decides its own (spec.ingressClassName, else the legacy
// annotation), and those without a class when the IngressClass name is
// the cluster's default. `postern migrate` reads ingress-nginx's with it.
func IngressesOfClass(ings []*networkingv1.Ingress, classes []*networkingv1.IngressClass, name string) []*networkingv1.Ingress {
	c := classifier{names: map[string]bool{name: true}}
	c.isDefault = c.defaultAmong(classes)
	var out []*networkingv1.Ingress
	for _, ing := range ings {
		if ing != nil && c.ours(ing) {
			out = append(out, ing)
		}
	}
	return out
}

// ours reports whether ing belongs to us. Its class is spec.ingressClassName,
// or, when that is unset or empty, the legacy annotation; an Ingress with
// neither is ours only when our class is the default one.
func (c classifier) ours(ing *networkingv1.Ingress) bool {
	class := ""
	if n := ing.Spec.IngressClassName; n != nil {
		class = *n
	}
	if class == "" {
		class = ing.Annotations[annotationLegacyClass]
	}
	if class == "" {
		return c.isDefault
	}
	return c.names[class]
}
