package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/observe"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    Failure
		want int
	}{
		{"refused", Failure{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, http.StatusBadGateway},
		{"deadline", Failure{Err: context.DeadlineExceeded}, http.StatusGatewayTimeout},
		{"net timeout", Failure{Err: &net.OpError{Op: "dial", Err: timeoutErr{}}}, http.StatusGatewayTimeout},
		{"client canceled", Failure{Err: context.Canceled, ClientGone: true}, observe.StatusClientClosedRequest},
		{"client gone while waiting", Failure{Err: ErrClientGone, ClientGone: true}, observe.StatusClientClosedRequest},
		{"malformed body", Failure{Err: io.ErrUnexpectedEOF, Body: errors.New("invalid byte in chunk length")}, http.StatusBadRequest},
		{"truncated body", Failure{Err: io.ErrUnexpectedEOF, Body: io.ErrUnexpectedEOF}, observe.StatusClientClosedRequest},
		{"body cut short", Failure{Err: io.EOF, Body: io.EOF}, observe.StatusClientClosedRequest},
		{"body too large", Failure{Err: ErrBodyTooLarge, Body: ErrBodyTooLarge}, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, _ := Classify(tt.f); got != tt.want {
				t.Errorf("Classify(%+v) = %d, want %d", tt.f, got, tt.want)
			}
			if got := tt.f.Client(); got != (tt.f.Body != nil || tt.f.ClientGone) {
				t.Errorf("Client() = %v", got)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// net/http's error for a keep-alive connection the endpoint closed as the
// request went out is matched by its text (isServerClosedIdle). This pins
// that text against the net/http the binary is built with: if a Go release
// changes it, this fails rather than retries silently stopping.
func TestServerClosedIdleText(t *testing.T) {
	t.Parallel()
	root, err := exec.CommandContext(t.Context(), "go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("no go command to find net/http's source: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(root)), "src", "net", "http", "transport.go"))
	if err != nil {
		t.Skipf("no net/http source to check against: %v", err)
	}
	const decl = `errServerClosedIdle = errors.New("http: server closed idle connection")`
	if !strings.Contains(string(src), decl) {
		t.Fatalf("net/http's transport.go no longer declares %s", decl)
	}
	if _, ok := retryableErr(errors.New("http: server closed idle connection")); !ok {
		t.Error("the error is not retryable")
	}
}
