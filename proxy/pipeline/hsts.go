package pipeline

// hsts is the secure listener's policy that sends Strict-Transport-Security
// on the responses for a host whose spec.tls asks for it (the
// postern.dev/hsts annotation). It is added to what the endpoint sends.
type hsts struct{}

func (hsts) Request(x *Exchange) {
	if th := x.table.TLSHost(x.In.Host()); th != nil && th.HSTS != "" {
		x.Resp.Add("Strict-Transport-Security", th.HSTS)
	}
}
