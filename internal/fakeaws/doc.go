// Package fakeaws is a local stand-in for the two AWS services meshcast's
// EC2 discovery talks to: the EC2 Query API (DescribeInstances only) and the
// instance metadata service, IMDSv2. It speaks the wire protocols closely
// enough for the real aws-sdk-go-v2 clients, so discovery code is tested
// unchanged, without network access or an AWS account.
//
// One [Server] holds a set of [Instance] values in one region. Its single
// [Server.Handler] serves IMDS under /latest/ and the Query API on every
// other path; serve it with net/http/httptest.
//
// # Pointing the SDK at it
//
// The SDK reads these environment variables (in tests, set them with
// t.Setenv):
//
//	AWS_ENDPOINT_URL_EC2=http://127.0.0.1:PORT               EC2 client base endpoint
//	AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT  IMDS endpoint; any path in it is ignored
//	AWS_REGION=eu-west-1                                     must equal the region given to New
//	AWS_ACCESS_KEY_ID=AKIDFAKE AWS_SECRET_ACCESS_KEY=secret  any static credentials
//
// and AWS_EC2_METADATA_DISABLED must be unset (or not "true"). In code, the
// same is config.WithBaseEndpoint (or ec2.Options.BaseEndpoint),
// config.WithEC2IMDSEndpoint, config.WithRegion and
// config.WithCredentialsProvider.
//
// Give the clients [HTTPClient] as well, through their options
// (ec2.Options.HTTPClient, imds.Options.HTTPClient) or with
// config.WithHTTPClient. The latter fails where AWS_CA_BUNDLE is set (or
// ca_bundle in the shared config file): LoadDefaultConfig then accepts no
// HTTP client but *awshttp.BuildableClient. Tests should unset
// AWS_CA_BUNDLE anyway, with the other AWS_ variables they do not set.
//
// # The EC2 Query API
//
// DescribeInstances accepts InstanceId.N, Filter.N.Name, Filter.N.Value.M,
// MaxResults (5..1000), NextToken and DryRun, and answers in the XML
// namespace [Namespace] with one reservation per instance, sorted by
// instance ID. The filters are tag:KEY, tag-key, tag-value,
// instance-state-name, instance-state-code, instance-id, vpc-id, subnet-id,
// private-ip-address and ipv6-address; several filters must all match, the values of
// one filter are alternatives, and values may use the wildcards * and ?.
// A filter without values matches instances that have the attribute.
// Unknown filters and parameters, malformed or unknown instance IDs,
// MaxResults out of range or combined with InstanceId, and a NextToken from
// another query are rejected with the error codes EC2 uses.
//
// Every request must carry a Signature Version 4 Authorization header
// scoped to service ec2 in the server's region (403 AuthFailure otherwise);
// the signature itself is not checked. Any Action but DescribeInstances is
// 400 InvalidAction. [Server.Throttle] and [Server.Fail] queue failures,
// [Server.Calls] counts requests and [Server.Hook] observes them. The SDK's
// standard retryer retries both kinds of failure, three attempts in all,
// with a random backoff of up to seconds; tests that want to see a failure
// set ec2.Options.RetryMaxAttempts to 1, and tests of retrying replace
// the backoff (retry.StandardOptions.Backoff).
//
// As in EC2, a terminated instance is listed without its private address,
// IPv6 addresses, VPC, subnet and network interfaces.
//
// # IPv6
//
// An instance's IPv6 addresses ([Instance].IPv6) appear on its one network
// interface (device index 0) as networkInterfaceSet/item/ipv6AddressesSet/item
// with ipv6Address and isPrimaryIpv6, which is true for the first one when
// [Instance].PrimaryIPv6 is set; that one is then also the instance's
// ipv6Address. An IPv6-only instance has IPv6 addresses and no PrivateIP:
// it is listed without privateIpAddress, and IMDS answers 404 for its
// local-ipv4.
//
// To test IMDS over IPv6, serve the handler on an IPv6 address:
// [StartServer] with "[::1]:0" serves it on the IPv6 loopback address, and
// AWS_EC2_METADATA_SERVICE_ENDPOINT then points at its URL,
// http://[::1]:PORT. (An endpoint wins over
// AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, which would send the SDK to
// the fixed address [fd00:ec2::254].)
//
// # IMDSv2
//
// PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1..21600)
// returns a token, and its TTL in the same response header. Every GET must
// send a live token in X-aws-ec2-metadata-token, or it gets 401. IMDSv1 is
// not served. The paths, relative to /latest/, are
//
//	meta-data/instance-id
//	meta-data/local-ipv4                              404 without a private IP
//	meta-data/ipv6                                    the first IPv6 address; 404 without one
//	meta-data/mac
//	meta-data/placement/region
//	meta-data/placement/availability-zone             the region + "a"
//	meta-data/network/interfaces/macs/                "MAC/"
//	meta-data/network/interfaces/macs/MAC/vpc-id      404 without a VPC
//	meta-data/network/interfaces/macs/MAC/subnet-id   404 without a VPC
//	meta-data/network/interfaces/macs/MAC/local-ipv4s 404 without a private IP
//	meta-data/network/interfaces/macs/MAC/ipv6s       one IPv6 address a line; 404 without one
//	dynamic/instance-identity/document                JSON
//
// IMDS answers for the instance chosen by [Server.SetIdentity]; by default,
// the one whose PrivateIP, or one of whose IPv6 addresses, is the client's
// address. Other paths, and
// requests from no known instance, get 404.
//
// # A race in the SDK
//
// With aws-sdk-go-v2 v1.48 (smithy-go v1.28.9) and Go 1.26, a
// DescribeInstances call against a local server fails now and then with
// "deserialization failed ... use of closed network connection" when the
// response is larger than about 4 KiB (three or more instances on a page),
// mostly under the race detector. The server has answered correctly; the
// client broke its own connection. net/http sends the request body
// straight to the socket, and only then checks that the body holds nothing
// beyond Content-Length. A local server answers within that gap, the SDK
// gets the response and closes its request body, and the body's WriteTo
// then returns io.EOF, which net/http takes for a write error: it closes
// the connection while the SDK is still reading the response. Real EC2 is
// too far away to answer within the gap. Tests that configure the SDK with
// [HTTPClient] are not affected.
//
// # Example
//
//	srv := fakeaws.New("eu-west-1")
//	srv.Put(fakeaws.Instance{
//		ID:        "i-0000000000000000a",
//		PrivateIP: netip.MustParseAddr("198.18.0.1"),
//		VPC:       "vpc-0123456789abcdef0",
//		Tags:      map[string]string{"multicast": "demo,198.19.0.1/24"},
//	})
//	srv.SetIdentity(func(*http.Request) string { return "i-0000000000000000a" })
//	ts := httptest.NewServer(srv.Handler())
//	defer ts.Close()
//	t.Setenv("AWS_ENDPOINT_URL_EC2", ts.URL)
//	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ts.URL)
//	t.Setenv("AWS_REGION", "eu-west-1")
//	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
//	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
//	t.Setenv("AWS_CA_BUNDLE", "")
//	os.Unsetenv("AWS_CA_BUNDLE")
//	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(fakeaws.HTTPClient(ts.URL)))
//	// ec2.NewFromConfig(cfg) and imds.NewFromConfig(cfg) now talk to srv.
//	srv.Throttle(2) // the next two DescribeInstances fail with RequestLimitExceeded
package fakeaws
