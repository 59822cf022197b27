package route

// HashBy sends the requests whose key is the same to the same endpoint
// (ingress-nginx's upstream-hash-by): the key, a template of nginx
// variables ("$request_uri", "$http_x_user", "$remote_addr"), is hashed
// onto the backend's endpoints consistently, so that adding or removing
// an endpoint moves only the keys that must move. Cookie affinity, when
// the route has it too, comes first, as in ingress-nginx.
type HashBy struct {
	Key *Template `json:"key"`
	// SubsetSize, when not zero, spreads each key over that many
	// endpoints, the request going to one of them at random
	// (upstream-hash-by-subset).
	SubsetSize int `json:"subsetSize,omitempty"`
}
