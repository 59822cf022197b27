package controller

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// manifestDecoder decodes YAML and JSON documents into the typed objects of
// client-go's scheme. It is strict, like `kubectl apply` (--validate=strict
// by default): an unknown or duplicated field in one of the kinds Postern
// reads is reported rather than silently dropped, because a misspelt
// "pathType" or "service" would otherwise change what is served.
var manifestDecoder = serializer.NewCodecFactory(manifestScheme, serializer.EnableStrict).UniversalDeserializer()

// manifestScheme is client-go's scheme and the Gateway API's kinds.
var manifestScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, gatewayv1.Install} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// decodeManifest is manifestDecoder.Decode, in about half the time for a
// YAML document that decodes cleanly. The strict YAML deserializer parses
// YAML twice (once to decode, once more to look for duplicate fields);
// here the one strict YAML-to-JSON conversion finds duplicates, and the
// JSON is decoded by the same strict deserializer (its JSON path). A
// document with any error, and a JSON one, go through manifestDecoder
// itself, so errors and their messages (with YAML line numbers) are
// exactly its own.
func decodeManifest(data []byte) (runtime.Object, *schema.GroupVersionKind, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] == '{' || t[0] == '[' {
		return manifestDecoder.Decode(data, nil, nil)
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return manifestDecoder.Decode(data, nil, nil)
	}
	obj, gvk, err := manifestDecoder.Decode(j, nil, nil)
	if err != nil {
		return manifestDecoder.Decode(data, nil, nil)
	}
	return obj, gvk, nil
}

const (
	// maxListDepth bounds Lists nested in Lists.
	maxListDepth = 4
	// maxReasonLen bounds the part of a message quoted from a decoder error,
	// which may quote the input; Event messages are limited to 1 KiB.
	maxReasonLen = 400
)

// The kinds Postern reads, and the only API versions it reads them in.
var manifestKinds = map[string]schema.GroupVersion{
	"Ingress":          networkingv1.SchemeGroupVersion,
	"IngressClass":     networkingv1.SchemeGroupVersion,
	"Service":          corev1.SchemeGroupVersion,
	"EndpointSlice":    discoveryv1.SchemeGroupVersion,
	"Secret":           corev1.SchemeGroupVersion,
	"ConfigMap":        corev1.SchemeGroupVersion,
	"Namespace":        corev1.SchemeGroupVersion,
	"GatewayClass":     gatewayGroupVersion,
	"Gateway":          gatewayGroupVersion,
	"HTTPRoute":        gatewayGroupVersion,
	"GRPCRoute":        gatewayGroupVersion,
	"BackendTLSPolicy": gatewayGroupVersion,
	"ReferenceGrant":   gatewayGroupVersion,
}

// gatewayGroupVersion is the Gateway API's v1, the one version Postern
// reads its kinds in.
var gatewayGroupVersion = schema.GroupVersion{Group: gatewayv1.GroupName, Version: "v1"}

// manifestObject is one object decoded from a manifest file.
type manifestObject struct {
	kind      string // a key of manifestKinds
	namespace string // empty for cluster-scoped kinds
	name      string
	line      int // where the document holding it starts, from 1
	obj       runtime.Object
}

// docProblem is something wrong with one document of a manifest file.
type docProblem struct {
	line    int // from 1
	message string
	// fatal problems mean the file was not understood as written: none of
	// its objects are taken, and the ones last loaded from it keep serving.
	// Others (a kind from a CRD Postern does not know) only skip a document.
	fatal bool
}

// decodedFile is what one manifest file holds.
type decodedFile struct {
	objects  []manifestObject
	problems []docProblem
}

// failed reports whether any document of the file could not be understood.
func (d decodedFile) failed() bool {
	for _, p := range d.problems {
		if p.fatal {
			return true
		}
	}
	return false
}

// manifestDoc is one YAML document of a file and the line it starts on.
type manifestDoc struct {
	line int
	data []byte
}

// decodeFile decodes every document of one manifest file. It never panics:
// whatever is wrong is a docProblem. The logger carries the file's name.
func decodeFile(data []byte, logger *zap.Logger) decodedFile {
	var out decodedFile
	docs, splitErr := splitDocuments(data)
	for _, doc := range docs {
		body, line := doc.data, doc.line
		if bytes.HasPrefix(body, []byte("---")) {
			// A leading separator: problems are about the line after it.
			_, body, _ = bytes.Cut(body, []byte("\n"))
			line++
		}
		out.decodeDocument(body, line, 0, logger)
	}
	if splitErr != nil {
		out.problems = append(out.problems, *splitErr)
	}
	return out
}

// splitDocuments splits a file into YAML documents with apimachinery's
// YAMLReader, the splitter kubectl uses, and finds the line each document
// starts on. A JSON file is one document.
//
// YAMLReader hands back a document as the lines it read, with "\r\n" turned
// into "\n". The "---" line that ends a document is dropped; one that starts
// the file (or follows another) is kept as the document's first line. So each
// document starts on the line after the previous one and its separator.
func splitDocuments(data []byte) ([]manifestDoc, *docProblem) {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		// YAMLReader drops a last line without a newline whose length is
		// a multiple of its 4 KiB buffer (apimachinery v0.37).
		data = append(data[:len(data):len(data)], '\n')
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []manifestDoc
	next := 0 // index in lines of the first line not read yet
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			// The only error YAMLReader makes from a bytes.Reader is a
			// separator followed by something other than a comment.
			for next < len(lines) && !isBadYAMLSeparator(lines[next]) {
				next++
			}
			return docs, &docProblem{line: next + 1, message: clipReason(err.Error()), fatal: true}
		}
		docs = append(docs, manifestDoc{line: next + 1, data: doc})
		next += bytes.Count(doc, []byte("\n")) + 1
	}
}

// isBadYAMLSeparator reports whether YAMLReader rejects line as a document
// separator: only a comment may follow the "---".
func isBadYAMLSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) > 0 && rest[0] != '#'
}

// decodeDocument decodes one document (or one item of a List) that starts at
// line and appends its objects and problems to d.
func (d *decodedFile) decodeDocument(data []byte, line, depth int, logger *zap.Logger) {
	obj, gvk, err := decodeManifest(data)
	var strictErr error
	if err != nil && obj != nil && runtime.IsStrictDecodingError(err) {
		strictErr, err = err, nil
	}
	if err != nil {
		d.decodeError(data, line, err, logger)
		return
	}

	if gvk == nil {
		k := obj.GetObjectKind().GroupVersionKind()
		gvk = &k
	}
	if !meta.IsListType(obj) {
		d.accept(obj, *gvk, data, line, strictErr, logger)
		return
	}
	// kind: List holds objects of any kind, each still encoded (they come
	// back as runtime.Unknown); a typed list (ServiceList, ...) holds
	// decoded objects without their TypeMeta.
	items, err := meta.ExtractList(obj)
	if err != nil {
		d.fatal(line, clipReason(err.Error()))
		return
	}
	itemGVK := gvk.GroupVersion().WithKind(strings.TrimSuffix(gvk.Kind, "List"))
	for _, item := range items {
		switch item := item.(type) {
		case nil:
			d.fatal(line, "empty item in "+gvk.Kind)
		case *runtime.Unknown:
			if depth >= maxListDepth {
				d.fatal(line, fmt.Sprintf("Lists nested more than %d deep", maxListDepth))
				return
			}
			d.decodeDocument(item.Raw, line, depth+1, logger)
		default:
			d.accept(item, itemGVK, data, line, strictErr, logger)
		}
	}
}

// decodeError turns an error of the deserializer into a problem, or into
// nothing for an empty document.
func (d *decodedFile) decodeError(data []byte, line int, err error, logger *zap.Logger) {
	switch {
	case runtime.IsMissingKind(err) || runtime.IsMissingVersion(err):
		// An empty document (only comments, or "---" twice) has no kind.
		if j, jerr := yaml.YAMLToJSON(data); jerr == nil && string(bytes.TrimSpace(j)) == "null" {
			return
		}
		if runtime.IsMissingKind(err) {
			d.fatal(line, "kind is missing")
		} else {
			d.fatal(line, "apiVersion is missing")
		}
	case runtime.IsNotRegisteredError(err):
		var m metav1.PartialObjectMetadata
		_ = yaml.Unmarshal(data, &m)
		gv, _ := schema.ParseGroupVersion(m.APIVersion)
		msg := fmt.Sprintf("unknown kind %q in apiVersion %q", m.Kind, m.APIVersion)
		if name := manifestObjectName(m.Namespace, m.Name); name != "" {
			msg += " (" + name + ")"
		}
		// A kind Postern does not know in a group it knows is a typo
		// ("Ingres", "networking.k8s.io/v11"), so the file is not
		// understood. A group it does not know is a CRD, such as a
		// cert-manager Certificate in the user's manifests: skip it.
		fatal := scheme.Scheme.IsGroupRegistered(gv.Group)
		if !fatal {
			msg += "; skipped"
		}
		logger.Debug("unknown kind in manifest", zap.Int("line", line), zap.String("kind", m.Kind),
			zap.String("namespace", m.Namespace), zap.String("name", m.Name), zap.Error(err))
		d.problems = append(d.problems, docProblem{line: line, message: clipReason(msg), fatal: fatal})
	default:
		at, reason := locateDecodeError(data, line, err)
		d.fatal(at, reason)
	}
}

// accept takes an object decoded from data, the document that starts at
// line, if it is one of the kinds Postern reads, and skips it quietly
// otherwise.
func (d *decodedFile) accept(obj runtime.Object, gvk schema.GroupVersionKind, data []byte, line int, strictErr error, logger *zap.Logger) {
	var kind string
	var objMeta *metav1.ObjectMeta
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		kind, objMeta = "Ingress", &o.ObjectMeta
	case *networkingv1.IngressClass:
		kind, objMeta = "IngressClass", &o.ObjectMeta
	case *corev1.Service:
		kind, objMeta = "Service", &o.ObjectMeta
		defaultManifestService(o)
	case *discoveryv1.EndpointSlice:
		kind, objMeta = "EndpointSlice", &o.ObjectMeta
		defaultManifestEndpointSlice(o)
	case *corev1.Secret:
		kind, objMeta = "Secret", &o.ObjectMeta
		defaultManifestSecret(o)
	case *corev1.ConfigMap:
		kind, objMeta = "ConfigMap", &o.ObjectMeta
	case *corev1.Namespace:
		kind, objMeta = "Namespace", &o.ObjectMeta
	case *gatewayv1.GatewayClass:
		kind, objMeta = "GatewayClass", &o.ObjectMeta
	case *gatewayv1.Gateway:
		kind, objMeta = "Gateway", &o.ObjectMeta
	case *gatewayv1.HTTPRoute:
		kind, objMeta = "HTTPRoute", &o.ObjectMeta
	case *gatewayv1.GRPCRoute:
		kind, objMeta = "GRPCRoute", &o.ObjectMeta
	case *gatewayv1.BackendTLSPolicy:
		kind, objMeta = "BackendTLSPolicy", &o.ObjectMeta
	case *gatewayv1.ReferenceGrant:
		kind, objMeta = "ReferenceGrant", &o.ObjectMeta
	default:
		var namespace, name string
		if m, err := meta.Accessor(obj); err == nil {
			namespace, name = m.GetNamespace(), m.GetName()
		}
		if want, ok := manifestKinds[gvk.Kind]; ok {
			d.fatal(line, fmt.Sprintf("%s %s (%s) is not supported; use apiVersion %s",
				gvk.Kind, gvk.GroupVersion(), manifestObjectName(namespace, name), want))
			return
		}
		logger.Debug("skipping kind Postern does not read", zap.Int("line", line),
			zap.String("kind", gvk.Kind), zap.String("namespace", namespace), zap.String("name", name))
		return
	}
	if kind == "IngressClass" || kind == "GatewayClass" || kind == "Namespace" {
		// Cluster-scoped: the API server ignores a namespace here.
		objMeta.Namespace = ""
	} else if objMeta.Namespace == "" {
		objMeta.Namespace = metav1.NamespaceDefault
	}
	if strictErr != nil {
		at, reason := locateDecodeError(data, line, strictErr)
		d.fatal(at, fmt.Sprintf("%s %s: %s", kind, manifestObjectName(objMeta.Namespace, objMeta.Name), reason))
		return
	}
	if objMeta.Name == "" {
		d.fatal(line, kind+" has no metadata.name")
		return
	}
	obj.GetObjectKind().SetGroupVersionKind(manifestKinds[kind].WithKind(kind))
	d.objects = append(d.objects, manifestObject{kind: kind, namespace: objMeta.Namespace, name: objMeta.Name, line: line, obj: obj})
}

func (d *decodedFile) fatal(line int, message string) {
	d.problems = append(d.problems, docProblem{line: line, message: message, fatal: true})
}

// The API server defaults some fields on create; objects from a cluster
// always have them. Doing the same here lets Build see the same objects in
// both modes.

func defaultManifestService(s *corev1.Service) {
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}

func defaultManifestEndpointSlice(s *discoveryv1.EndpointSlice) {
	for i := range s.Ports {
		if s.Ports[i].Protocol == nil {
			tcp := corev1.ProtocolTCP
			s.Ports[i].Protocol = &tcp
		}
	}
}

// defaultManifestSecret merges stringData into data, as the API server does on write
// ("stringData ... is merged into the data field on write, overwriting any
// existing values"), so a TLS Secret written with stringData works.
func defaultManifestSecret(s *corev1.Secret) {
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) == 0 {
		return
	}
	if s.Data == nil {
		s.Data = make(map[string][]byte, len(s.StringData))
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}

// yamlLineRE finds the line numbers YAML errors give ("yaml: line 3: ...",
// "line 5: key \"name\" already set in map"), counted from the document's
// first line.
var yamlLineRE = regexp.MustCompile(`\bline (\d+)`)

// locateDecodeError returns the line of the file an error is about and the error as a
// one-line reason with its line numbers counted from the top of the file. The
// document starts at line start; data, if it is JSON, gives the line of a JSON
// syntax error.
func locateDecodeError(data []byte, start int, err error) (int, string) {
	// An error at the end of the stream is a line past the document.
	last := start + max(bytes.Count(data, []byte("\n")), 1) - 1
	at := 0
	reason := yamlLineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, convErr := strconv.Atoi(strings.TrimPrefix(m, "line "))
		if convErr != nil || n < 1 || n > 1<<30 {
			return m
		}
		n = min(n+start-1, last)
		if at == 0 {
			at = n
		}
		return "line " + strconv.Itoa(n)
	})
	if at == 0 {
		at = start + jsonSyntaxErrorLine(data)
	}
	// "yaml: line 7: did not find expected key" -> "yaml: did not find ...",
	// since the message already starts with the line.
	reason = strings.Replace(reason, "line "+strconv.Itoa(at)+": ", "", 1)
	return at, clipReason(strings.Join(strings.Fields(reason), " "))
}

// jsonSyntaxErrorLine returns how many lines into data a JSON syntax error is, or 0
// when data is not JSON or has no syntax error.
func jsonSyntaxErrorLine(data []byte) int {
	if !utilyaml.IsJSONBuffer(data) {
		return 0
	}
	var v any
	var syntax *json.SyntaxError
	if err := json.Unmarshal(data, &v); !errors.As(err, &syntax) || syntax.Offset > int64(len(data)) {
		return 0
	}
	before := data[:syntax.Offset]
	if n := len(before); n > 0 && before[n-1] == '\n' {
		// The offset is just past the byte that was wrong.
		before = before[:n-1]
	}
	return bytes.Count(before, []byte("\n"))
}

// manifestObjectName formats namespace/name, or name alone.
func manifestObjectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// clipReason shortens s to maxReasonLen bytes, on a rune boundary.
func clipReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	cut := maxReasonLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
