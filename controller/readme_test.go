package controller

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's ingress-nginx compatibility table is made from
// NginxAnnotations, between these markers.
const (
	readmeTableBegin = "<!-- nginx-annotations:begin: made by TestReadmeNginxTable from controller/nginx_rows.go; go test ./controller -run TestReadmeNginxTable -update -->"
	readmeTableEnd   = "<!-- nginx-annotations:end -->"
)

// readmeNginxTable renders the compatibility table, one row an annotation.
func readmeNginxTable() string {
	var b strings.Builder
	b.WriteString("| annotation | alias | status | note |\n|---|---|---|---|\n")
	cellText := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, a := range NginxAnnotations() {
		alias := ""
		if a.Alias != "" {
			alias = "`" + a.Alias + "`"
		}
		b.WriteString("| `" + a.Name + "` | " + alias + " | " + string(a.Status) + " | " + cellText.Replace(a.Note) + " |\n")
	}
	return b.String()
}

// TestReadmeNginxTable checks that the README's compatibility table is
// the annotation table's; -update rewrites it.
func TestReadmeNginxTable(t *testing.T) {
	path := filepath.Join("..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok := bytes.Cut(readme, []byte(readmeTableBegin+"\n"))
	_, after, ok2 := bytes.Cut(rest, []byte(readmeTableEnd))
	if !ok || !ok2 {
		t.Fatalf("%s has no %s ... %s lines", path, readmeTableBegin, readmeTableEnd)
	}
	got := string(rest[:len(rest)-len(after)-len(readmeTableEnd)])
	want := readmeNginxTable()
	if got == want {
		return
	}
	if *update {
		out := append(append(append(before, readmeTableBegin+"\n"...), want...), readmeTableEnd...)
		if err := os.WriteFile(path, append(out, after...), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the README's ingress-nginx table is out of date (-want +got; go test ./controller -run TestReadmeNginxTable -update rewrites it):\n%s", goldenDiff(want, got))
}
