package route

// ErrorPages sends the answers of some statuses to an error backend
// (ingress-nginx's default-backend and custom-http-errors): the route's
// backend among Route.Backends marked ErrorPage, weight 0. A request that
// finds no endpoint goes there with X-Code 503; a response of the
// endpoint with one of Codes is replaced, when Intercept is set, by the
// error backend's answer to the same request for "/", with X-Code, X-Format
// (the client's Accept), X-Original-URI, X-Namespace, X-Ingress-Name,
// X-Service-Name, X-Service-Port and X-Request-ID. The client gets the
// error backend's status and body.
type ErrorPages struct {
	Codes []int `json:"codes,omitempty"`
	// Intercept replaces the endpoint's responses of Codes; off with
	// disable-proxy-intercept-errors.
	Intercept bool `json:"intercept,omitempty"`
}

// ErrorBackend returns r's error backend, nil when it has none.
func (r *Route) ErrorBackend() *Backend {
	for _, wb := range r.Backends {
		if wb.ErrorPage {
			return wb.Backend
		}
	}
	return nil
}
