package controller

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// The report of `postern migrate`: what Postern would do with the
// ingress-nginx annotations of a set of Ingresses, and with the keys of
// ingress-nginx's ConfigMap (nginx_configmap.go). It reads the same rows
// and the same readNginx as Build, so that the report and what is served
// never disagree.

// Kinds of NginxFinding.
const (
	// FindingIngress is a finding about an annotation of an Ingress.
	FindingIngress = "ingress"
	// FindingConfigMap is a finding about a key of ingress-nginx's
	// controller ConfigMap.
	FindingConfigMap = "configmap"
)

// NginxFinding is one line of `postern migrate`'s report: one annotation
// of an Ingress, or one key of ingress-nginx's ConfigMap, and what Postern
// does with it.
type NginxFinding struct {
	// Kind is FindingIngress or FindingConfigMap.
	Kind string `json:"kind"`
	// Namespace is the Ingress's or the ConfigMap's.
	Namespace string `json:"namespace"`
	// Ingress is the Ingress's name; empty for a ConfigMap key.
	Ingress string `json:"ingress,omitempty"`
	// ConfigMap is the ConfigMap's name; empty for an annotation.
	ConfigMap string `json:"configmap,omitempty"`
	// Annotation is the annotation's full key; empty for a ConfigMap key.
	Annotation string `json:"annotation,omitempty"`
	// Key is the ConfigMap key; empty for an annotation.
	Key string `json:"key,omitempty"`
	// Value is the annotation's or the key's value, as written.
	Value string `json:"value"`
	// Status is how Postern serves it, for this value on this object.
	Status NginxStatus `json:"status"`
	// Flag is the Postern flag that does what a ConfigMap key does; empty
	// when there is none.
	Flag string `json:"flag,omitempty"`
	// Note says what Postern does, or why not; may be empty.
	Note string `json:"note,omitempty"`
}

// removedNginx are annotations ingress-nginx removed, with what replaced
// them: still seen in manifests, reported as unknown with the hint.
var removedNginx = map[string]string{
	"secure-backends":                 "removed in ingress-nginx 0.21; use backend-protocol: HTTPS",
	"grpc-backend":                    "removed in ingress-nginx 0.21; use backend-protocol: GRPC",
	"secure-verify-ca-secret":         "removed in ingress-nginx; use proxy-ssl-secret",
	"session-cookie-hash":             "removed in ingress-nginx 0.24",
	"add-base-url":                    "removed in ingress-nginx",
	"base-url-scheme":                 "removed in ingress-nginx",
	"secure-upstream":                 "removed in ingress-nginx 1.7.1",
	"enable-opentracing":              "removed in ingress-nginx 1.10; see enable-opentelemetry",
	"opentracing-trust-incoming-span": "removed in ingress-nginx 1.10",
	"global-rate-limit":               "removed in ingress-nginx 1.12",
	"global-rate-limit-window":        "removed in ingress-nginx 1.12",
	"global-rate-limit-key":           "removed in ingress-nginx 1.12",
	"global-rate-limit-ignored-cidrs": "removed in ingress-nginx 1.12",
}

// noteIgnoredUnknown ends the note of an unknown annotation.
const noteIgnoredUnknown = "ignored, as ingress-nginx ignores it"

// foreignAnnotations are annotations of other controllers, or of old
// Kubernetes, that users carry over from ingress-nginx manifests by
// mistake: a key equal to key, or under it when it ends in "/". Neither
// ingress-nginx nor Postern reads them (the legacy class excepted, see
// its note).
var foreignAnnotations = []struct{ key, note string }{
	{annotationLegacyClass, "the deprecated class annotation: set spec.ingressClassName to Postern's class (--ingress-class, default postern) instead; Postern still reads it when the field is not set"},
	{"ingress.kubernetes.io/", "the prefix of ingress-nginx before 0.9 and of other controllers; neither ingress-nginx nor Postern reads it"},
	{"nginx.org/", "NGINX Inc's controller (nginx.org/), not ingress-nginx; neither ingress-nginx nor Postern reads it"},
	{"nginx.com/", "NGINX Inc's controller (nginx.com/), not ingress-nginx; neither ingress-nginx nor Postern reads it"},
}

// NginxFindings reports, for each Ingress of ings, every annotation under
// prefix (--annotations-prefix; empty means DefaultAnnotationsPrefix) and
// every one under another controller's prefix, with what Postern does with
// it: the row's status, or unsupported when this value cannot be honoured
// (backend-protocol FCGI, enable-modsecurity "true", a path RE2 cannot
// compile in regex mode), unknown for keys that are no ingress-nginx
// annotation. ings are the Ingresses of one class (IngressesOfClass): regex
// mode spans the Ingresses of a host. Findings are sorted by namespace,
// Ingress and annotation.
func NginxFindings(ings []*networkingv1.Ingress, prefix string) []NginxFinding {
	if prefix == "" {
		prefix = DefaultAnnotationsPrefix
	}
	ings = slices.DeleteFunc(slices.Clone(ings), func(ing *networkingv1.Ingress) bool { return ing == nil })
	badRegex := badRegexPaths(ings, prefix)
	var out []NginxFinding
	for _, ing := range ings {
		out = append(out, ingressFindings(ing, prefix, badRegex)...)
	}
	slices.SortStableFunc(out, func(a, b NginxFinding) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Ingress, b.Ingress), cmp.Compare(a.Annotation, b.Annotation))
	})
	return out
}

// ingressFindings reports the annotations of one Ingress, in key order.
// badRegex holds, by host, the paths that regex mode makes unservable.
func ingressFindings(ing *networkingv1.Ingress, prefix string, badRegex map[string][]badRegexPath) []NginxFinding {
	var cfg ingressConfig
	res := readNginx(ing.Annotations, prefix, &cfg)
	read := nginxVerdicts{refused: make(map[string]string, len(res.keys)), fallback: make(map[string]string, len(res.problemKeys)),
		canary: cfg.nginx.canary != nil}
	for i, k := range res.keys {
		read.refused[k] = res.refused[i].msg
	}
	for i, k := range res.problemKeys {
		read.fallback[k] = res.problems[i]
	}
	keys := make([]string, 0, len(ing.Annotations))
	for k := range ing.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []NginxFinding
	for _, k := range keys {
		f := NginxFinding{Kind: FindingIngress, Namespace: ing.Namespace, Ingress: ing.Name, Annotation: k, Value: ing.Annotations[k]}
		if name, ok := strings.CutPrefix(k, prefix+"/"); ok {
			f.Status, f.Note = read.finding(ing, prefix, name, badRegex)
		} else if note := foreignNote(k, prefix); note != "" {
			f.Status, f.Note = NginxUnknown, note
		} else {
			continue
		}
		out = append(out, f)
	}
	return out
}

// nginxVerdicts is what readNginx said about an Ingress's annotations, by
// full key: the message of each it refused (the Ingress answers 503), and
// of each value that fell back to its default or is kept as ingress-nginx
// keeps it; and whether the Ingress is a canary.
type nginxVerdicts struct {
	refused, fallback map[string]string
	canary            bool
}

// finding is the status and note of annotation name (without prefix) on
// ing.
func (read nginxVerdicts) finding(ing *networkingv1.Ingress, prefix, name string, badRegex map[string][]badRegexPath) (NginxStatus, string) {
	r := nginxByName[name]
	if r == nil {
		if hint, ok := removedNginx[name]; ok {
			return NginxUnknown, hint + "; " + noteIgnoredUnknown
		}
		return NginxUnknown, "not an ingress-nginx annotation (a typo, or another controller's); " + noteIgnoredUnknown
	}
	key := prefix + "/" + name
	v := strings.TrimSpace(ing.Annotations[key])
	if read.canary && !canaryAnnotation(name) && !isSnippet(name) {
		// deferCanary: the mainline's annotations apply.
		return NginxIgnored, "on a canary Ingress only the canary and balancing annotations count, as in ingress-nginx"
	}
	if msg, ok := read.refused[key]; ok {
		switch {
		case read.canary:
			return NginxUnsupported, strings.Replace(msg, "every path of this Ingress answers 503", "the canary is not served", 1)
		case r.Status == NginxUnsupported:
			return NginxUnsupported, r.Note
		}
		return NginxUnsupported, msg // a value Postern cannot honour, or an invalid one
	}
	if msg, ok := read.fallback[key]; ok {
		return r.Status, msg
	}
	switch {
	case name == r.Alias && hasKey(ing.Annotations, prefix+"/"+r.Name):
		return NginxIgnored, fmt.Sprintf("%s/%s is also set and wins, as in ingress-nginx", prefix, r.Name)
	case v == "" && r.Status != NginxUnsupported:
		return r.Status, "empty, which is not set (as in ingress-nginx)"
	case turnsOnRegex(name, v):
		if bad := regexPathsOf(ing, badRegex); len(bad) > 0 {
			return NginxUnsupported, "regex mode makes every path of the host a regular expression, and RE2 (no look-around, " +
				"backreferences or possessive quantifiers) cannot compile " + strings.Join(bad, ", ") + ", which answers 503"
		}
	}
	return r.Status, r.Note
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// turnsOnRegex reports whether annotation name with value v puts the
// hosts of its Ingress in regex mode, as nginxHostsOf decides (a canary's
// never, but its annotations are ignored before this).
func turnsOnRegex(name, v string) bool {
	switch name {
	case "use-regex":
		on, err := parseNginxBool(v)
		return err == nil && on
	case "rewrite-target":
		return v != ""
	}
	return false
}

// foreignNote is the note of annotation key when it belongs to another
// controller (foreignAnnotations), naming the ingress-nginx annotation of
// the same name when there is one; "" otherwise.
func foreignNote(key, prefix string) string {
	for _, fa := range foreignAnnotations {
		name, ok := strings.CutPrefix(key, fa.key)
		switch {
		case !ok, strings.HasSuffix(fa.key, "/") && name == "", !strings.HasSuffix(fa.key, "/") && name != "":
			continue
		case nginxByName[name] != nil:
			return fmt.Sprintf("%s; did you mean %s/%s?", fa.note, prefix, name)
		}
		return fa.note
	}
	return ""
}

// badRegexPath is a path that Postern cannot serve because its host is in
// regex mode and RE2 cannot compile it; Build gives it an InvalidPath
// Problem and it answers 503.
type badRegexPath struct {
	path    string // host and path, quoted
	ingress *networkingv1.Ingress
}

// badRegexPaths returns the bad regex paths of ings, by host.
func badRegexPaths(ings []*networkingv1.Ingress, prefix string) map[string][]badRegexPath {
	regex := nginxHostsOf(ings, prefix).regex
	bad := make(map[string][]badRegexPath)
	for _, ing := range ings {
		if canary, _ := parseNginxBool(strings.TrimSpace(ing.Annotations[prefix+"/canary"])); canary {
			continue // its paths join the mainline's routes
		}
		for _, r := range ing.Spec.Rules {
			h, msg := normalizeHost(r.Host)
			if msg != "" || !regex[h] || r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				if normalizePath(p.PathType, p.Path).reason != "" {
					continue // invalid whatever the mode
				}
				if _, err := route.CompilePath(nginxRegex(p.Path)); err != nil {
					bad[h] = append(bad[h], badRegexPath{path: quoteShort(h + p.Path), ingress: ing})
				}
			}
		}
	}
	return bad
}

// regexPathsOf describes the bad regex paths of the hosts of ing's rules,
// naming the Ingress of those that are another's.
func regexPathsOf(ing *networkingv1.Ingress, badRegex map[string][]badRegexPath) []string {
	var out []string
	for _, r := range ing.Spec.Rules {
		h, msg := normalizeHost(r.Host)
		if msg != "" {
			continue
		}
		for _, b := range badRegex[h] {
			d := b.path
			if b.ingress != ing {
				d += " (Ingress " + b.ingress.Namespace + "/" + b.ingress.Name + ")"
			}
			out = append(out, d)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}
