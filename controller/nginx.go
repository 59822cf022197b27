package controller

import (
	"fmt"
	"slices"
	"strings"
)

// snippetAnnotations are the ingress-nginx annotations that carry nginx
// configuration. Postern never renders anything into a configuration
// language, so it cannot honour them; an Ingress that has one is refused,
// fail closed: its paths answer 503 (see refusedSnippets).
var snippetAnnotations = []string{
	"auth-snippet", "configuration-snippet", "modsecurity-snippet", "server-snippet", "stream-snippet",
}

// annotationsPrefix returns the ingress-nginx annotations prefix of opts.
func (o Options) annotationsPrefix() string {
	if o.AnnotationsPrefix == "" {
		return DefaultAnnotationsPrefix
	}
	return o.AnnotationsPrefix
}

// refusedSnippets returns the snippet annotations (full keys, sorted) of
// annotations under prefix, and the Problem message that refuses them;
// none when there are none. An empty value counts: ingress-nginx treats it
// as absent, but a snippet the user meant to clear is still one Postern
// would have to pretend to honour.
func refusedSnippets(annotations map[string]string, prefix string) (keys []string, msg string) {
	for _, a := range snippetAnnotations {
		k := prefix + "/" + a
		if _, ok := annotations[k]; ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, ""
	}
	slices.Sort(keys)
	noun := "annotation " + keys[0] + " holds"
	if len(keys) > 1 {
		noun = "annotations " + strings.Join(keys, ", ") + " hold"
	}
	return keys, fmt.Sprintf("%s nginx configuration, which Postern never runs: every path of this Ingress answers 503 "+
		"until it is removed; move what it did to typed annotations: "+AnnotationRequestHeaders+" for proxy_set_header, "+
		AnnotationResponseHeaders+" for more_set_headers, add_header and proxy_hide_header, the redirect and rewrite annotations "+
		"for return and rewrite (the README's ingress-nginx section lists them)", noun)
}
