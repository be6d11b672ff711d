package fakeaws

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// HTTPClient returns an HTTP client for SDK clients that talk to a fake
// server at base (such as httptest.Server.URL); pass it with
// config.WithHTTPClient. It differs from the SDK's default client in two
// ways:
//
//   - It refuses every request to another host, so a misconfigured SDK fails
//     instead of reaching AWS, and it never uses a proxy.
//   - It works around a race between the SDK and net/http that otherwise
//     breaks DescribeInstances responses larger than about 4 KiB now and
//     then, mostly under the race detector: see "A race in the SDK" in the
//     package documentation.
func HTTPClient(base string) *http.Client {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		panic(fmt.Sprintf("fakeaws: HTTPClient(%q): not an absolute URL", base))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{Transport: &sdkTransport{host: u.Host, next: tr}}
}

type sdkTransport struct {
	host string
	next http.RoundTripper
}

func (t *sdkTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("fakeaws: refusing %s %s: only %s is allowed", r.Method, r.URL.Redacted(), t.host)
	}
	if r.Body != nil && r.Body != http.NoBody {
		r = r.Clone(r.Context())
		r.Body = readCloser{r.Body}
	}
	return t.next.RoundTrip(r)
}

// readCloser hides every method of a request body but Read and Close. The
// SDK's body also has WriteTo, which fails with io.EOF once the SDK has
// closed the body; net/http, still checking for bytes beyond
// Content-Length, takes that for a write error and closes the connection
// while the response is being read. Read after Close returns io.EOF, which
// net/http takes for the end of the body, as it is.
type readCloser struct{ io.ReadCloser }
