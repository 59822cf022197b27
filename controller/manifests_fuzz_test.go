package controller

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// FuzzDecode feeds one file's bytes to the manifest decoder. It must never
// panic, must place every problem on a line of the file, must only return
// objects Postern reads with a name, and must split documents exactly along
// the file's lines (which is what makes the line numbers right).
func FuzzDecode(f *testing.F) {
	_ = filepath.WalkDir("testdata/manifests", func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, err := os.ReadFile(path); err == nil {
				f.Add(data)
			}
		}
		return nil
	})
	for _, seed := range []string{
		manifestService("a") + "---\n" + manifestService("b"),
		strings.ReplaceAll(manifestService("a")+"---\n"+manifestService("b"), "\n", "\r\n"),
		manifestService("a") + "--- x\n",
		"---\n---\n# comment\n---\nnull\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n\tbad: 1\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n",
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items:\n  - " + strings.ReplaceAll(manifestService("x"), "\n", "\n    "),
		"apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: a}\n",
		`{"apiVersion": "v1", "kind": "List", "items": [{"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}, "stringData": {"a": "b"}}]}`,
		`{"apiVersion": "v1", "kind": "Service",` + "\n" + `"metadata": {"name": 1}}`,
		"apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
		"apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: w\n",
		"a: &a [*a, *a]\n",
		"k8s\x00\x0a\x02",
		"0: \"0", // an error at the end of the stream is on the last line
		"\r",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, splitErr := splitDocuments(data)
		checkDocumentLines(t, data, docs)

		d := decodeFile(data, zap.NewNop())
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range d.problems {
			if p.line < 1 || p.line > lines {
				t.Errorf("problem on line %d of a %d-line file: %s", p.line, lines, p.message)
			}
			if p.message == "" {
				t.Error("problem without a message")
			}
		}
		if splitErr != nil && !d.failed() {
			t.Error("a file that does not split did not fail")
		}
		for _, o := range d.objects {
			if _, ok := manifestKinds[o.kind]; !ok || o.name == "" || o.obj == nil || o.line < 1 || o.line > lines {
				t.Errorf("bad object %+v", o)
			}
			if (o.kind == "IngressClass") != (o.namespace == "") {
				t.Errorf("%s %s has namespace %q", o.kind, o.name, o.namespace)
			}
		}
	})
}

// checkDocumentLines checks that every document is the lines of data that
// start at its line, as YAMLReader gives them (ending in "\n", "\r\n" as
// "\n").
func checkDocumentLines(t *testing.T, data []byte, docs []manifestDoc) {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data[:len(data):len(data)], '\n') // as splitDocuments does
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for _, doc := range docs {
		n := bytes.Count(doc.data, []byte("\n"))
		if doc.line < 1 || doc.line-1+n > len(lines) {
			t.Fatalf("document at line %d with %d lines, file has %d", doc.line, n, len(lines))
		}
		var want []byte
		for _, l := range lines[doc.line-1 : doc.line-1+n] {
			if trimmed, ok := bytes.CutSuffix(l, []byte("\n")); ok {
				l = bytes.TrimSuffix(trimmed, []byte("\r"))
			}
			want = append(append(want, l...), '\n')
		}
		if !bytes.Equal(doc.data, want) {
			t.Fatalf("document at line %d is\n%q\nbut the file there has\n%q", doc.line, doc.data, want)
		}
	}
}

// FuzzDecodeManifest checks that decodeManifest, the fast way to decode a
// document, returns exactly what the strict deserializer returns: the
// same object, kind and error.
func FuzzDecodeManifest(f *testing.F) {
	for _, seed := range []string{
		manifestService("a"),
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  portz: []\n",
		"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, annotations: {a: \"1\"}}\nspec: {rules: [{host: a.b, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}}]}\n",
		"apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(manifestService("x"), "\n", "\n  "),
		"# only a comment\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: !!binary aGk=}\n",
		`{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gotObj, gotGVK, gotErr := decodeManifest(data)
		wantObj, wantGVK, wantErr := manifestDecoder.Decode(data, nil, nil)
		if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
			t.Fatalf("error %v, the strict deserializer says %v:\n%q", gotErr, wantErr, data)
		}
		if !reflect.DeepEqual(gotGVK, wantGVK) {
			t.Fatalf("kind %v, the strict deserializer says %v:\n%q", gotGVK, wantGVK, data)
		}
		if !apiequality.Semantic.DeepEqual(gotObj, wantObj) {
			t.Fatalf("object differs from the strict deserializer's:\n%#v\n%#v\n%q", gotObj, wantObj, data)
		}
	})
}
