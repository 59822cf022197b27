package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestExpand(t *testing.T) {
	vals := map[string]string{"POD_NAME": "web-1", "EMPTY": ""}
	for in, want := range map[string]string{
		"--name=$(POD_NAME)":   "--name=web-1",
		"$(EMPTY)x":            "x",
		"$$(POD_NAME)":         "$(POD_NAME)",
		"$(UNKNOWN)":           "$(UNKNOWN)",
		"cost $5":              "cost $5",
		"$(POD_NAME":           "$(POD_NAME",
		"a$":                   "a$",
		"$(POD_NAME)$(EMPTY)!": "web-1!",
	} {
		if got := expand(in, vals); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageTable(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "echo")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var tbl imageTable
	if err := tbl.add("*postern-dev/echo=" + bin); err != nil {
		t.Fatal(err)
	}
	if err := tbl.add("*=" + filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing binary was accepted")
	}
	for _, img := range []string{"ghcr.io/postern-dev/echo", "ghcr.io/postern-dev/echo:v1", "localhost:5000/postern-dev/echo@sha256:abc", "postern-dev/echo:latest"} {
		if _, err := tbl.lookup(img); err != nil {
			t.Errorf("%s: %v", img, err)
		}
	}
	_, err := tbl.lookup("nginx:1.27")
	if err == nil || !strings.Contains(err.Error(), "not in this test node's image table") {
		t.Errorf("nginx: %v, want a clear refusal", err)
	}
	e, _ := tbl.lookup("ghcr.io/postern-dev/echo:v1")
	if b, args, err := e.program(nil, []string{"--name", "x"}); err != nil || b != bin || strings.Join(args, " ") != "--name x" {
		t.Errorf("args only: %s %v %v", b, args, err)
	}
	if _, args, err := e.program([]string{"/echo", "--listen", ":1"}, []string{"--name", "x"}); err != nil || strings.Join(args, " ") != "--listen :1 --name x" {
		t.Errorf("command and args: %v %v", args, err)
	}
	if _, _, err := e.program([]string{"/bin/sh", "-c", "true"}, nil); err == nil {
		t.Error("a command the image does not hold was accepted")
	}
}

func TestAllocateRoundRobin(t *testing.T) {
	n := newNetwork("pb0", "x", netip.MustParsePrefix("198.51.100.0/29"))
	if n.nodeIP.String() != "198.51.100.1" {
		t.Fatalf("node IP %s", n.nodeIP)
	}
	var got []string
	for i := range 5 {
		a, err := n.allocate(string(rune('a' + i)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "198.51.100.2 198.51.100.3 198.51.100.4 198.51.100.5 198.51.100.6" {
		t.Errorf("allocated %v", got)
	}
	if _, err := n.allocate("f"); err == nil {
		t.Error("a /29 gave out more than 5 Pod addresses")
	}
	// A freed address is given out again only after the others.
	delete(n.inUse, netip.MustParseAddr("198.51.100.3"))
	delete(n.inUse, netip.MustParseAddr("198.51.100.5"))
	a, _ := n.allocate("g")
	b, _ := n.allocate("h")
	if a.String() != "198.51.100.3" || b.String() != "198.51.100.5" {
		t.Errorf("after freeing .3 and .5: %s then %s", a, b)
	}
	if l := lastAddr(netip.MustParsePrefix("198.51.100.64/26")); l.String() != "198.51.100.127" {
		t.Errorf("broadcast of /26: %s", l)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	if err := writeFiles(dir, map[string]file{"tls.crt": {[]byte("a"), 0o644}, "sub/key": {[]byte("b"), 0o600}}); err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(dir, map[string]file{"tls.crt": {[]byte("c"), 0o644}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tls.crt")); string(b) != "c" {
		t.Errorf("tls.crt = %q after the update", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub/key")); err == nil {
		t.Error("a key no longer in the Secret is still there")
	}
	if err := writeFiles(dir, map[string]file{"../escape": {[]byte("x"), 0o644}}); err == nil {
		t.Error("a path out of the volume was written")
	}
}

func TestLogLines(t *testing.T) {
	var b bytes.Buffer
	o := &logOut{w: &b, limit: -1}
	o.line([]byte("2026-12-03T10:00:00.5Z stdout F hello\n"))
	o.line([]byte("2026-12-03T10:00:01Z stderr F world\n"))
	if b.String() != "hello\nworld\n" {
		t.Errorf("plain: %q", b.String())
	}
	b.Reset()
	o = &logOut{w: &b, timestamps: true, since: time.Date(2026, 12, 3, 10, 0, 1, 0, time.UTC), limit: 8}
	o.line([]byte("2026-12-03T10:00:00.5Z stdout F hello\n"))
	o.line([]byte("2026-12-03T10:00:01Z stderr F world\n"))
	if b.String() != "2026-12-" {
		t.Errorf("since, timestamps and limitBytes: %q", b.String())
	}
}

func TestPhase(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}}
	c := &container{}
	if got := phase(pod, nil, []*container{c}); got != corev1.PodPending {
		t.Errorf("never started: %s", got)
	}
	c.everRan, c.running = true, true
	if got := phase(pod, nil, []*container{c}); got != corev1.PodRunning {
		t.Errorf("running: %s", got)
	}
	c.running, c.exitCode = false, 0
	if got := phase(pod, nil, []*container{c}); got != corev1.PodSucceeded {
		t.Errorf("exited 0 with Never: %s", got)
	}
	c.exitCode = 1
	if got := phase(pod, nil, []*container{c}); got != corev1.PodFailed {
		t.Errorf("exited 1 with Never: %s", got)
	}
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	if got := phase(pod, nil, []*container{c}); got != corev1.PodRunning {
		t.Errorf("exited 1 with Always (to be restarted): %s", got)
	}
}
