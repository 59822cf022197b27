-- wrk resolves the host of its URL at start and connects there. The
-- benchmark's virtual host (bench.example.com) is in no DNS, so this script
-- connects to 127.0.0.1 instead, on the URL's port; the URL's host is still
-- what wrk sends as Host header and as TLS server name (SNI).
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
