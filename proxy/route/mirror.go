package route

// Mirror sends a copy of every request the route forwards to another URL
// (ingress-nginx's mirror-target, mirror-host, mirror-request-body); the
// copy's answer is ignored and never slows the client.
type Mirror struct {
	// Target is the absolute http(s) URL of the copy, nginx variables
	// allowed ("https://test.example.com$request_uri").
	Target *Template `json:"target"`
	// Host is the Host of the copy; empty: the host of Target.
	Host string `json:"host,omitempty"`
	// Body sends the request body with the copy (mirror-request-body,
	// on by default).
	Body bool `json:"body,omitempty"`
}

// MirrorShare is the share of a route's requests a mirror backend
// (WeightedBackend.Mirror) gets a copy of: Numerator in Denominator.
type MirrorShare struct {
	Numerator   int32 `json:"numerator"`
	Denominator int32 `json:"denominator"`
}
