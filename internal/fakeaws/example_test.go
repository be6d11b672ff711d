package fakeaws_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/meshcast/meshcast/internal/fakeaws"
)

// This example configures the SDK with options instead of environment
// variables: the same endpoints, region and static credentials.
func ExampleServer() {
	srv := fakeaws.New("eu-west-1")
	for i, ip := range []string{"198.18.0.1", "198.18.0.2", "198.18.0.3"} {
		srv.Put(fakeaws.Instance{
			ID:        fmt.Sprintf("i-000000000000000%d", i+1),
			PrivateIP: netip.MustParseAddr(ip),
			VPC:       "vpc-0123456789abcdef0",
			Tags:      map[string]string{"multicast": fmt.Sprintf("demo,198.19.0.%d/24", i+1)},
		})
	}
	srv.SetState("i-0000000000000003", "stopped")
	srv.SetIdentity(func(*http.Request) string { return "i-0000000000000001" })
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion("eu-west-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDFAKE", "secret", "")),
		config.WithBaseEndpoint(ts.URL),
		config.WithEC2IMDSEndpoint(ts.URL),
	)
	if err != nil {
		panic(err)
	}
	// Each client gets fakeaws.HTTPClient through its options.
	// config.WithHTTPClient would do too, but not where AWS_CA_BUNDLE is set.
	hc := fakeaws.HTTPClient(ts.URL)
	md := imds.NewFromConfig(cfg, func(o *imds.Options) { o.HTTPClient = hc })
	api := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.HTTPClient = hc })

	// Who am I?
	out, err := md.GetMetadata(ctx, &imds.GetMetadataInput{Path: "instance-id"})
	if err != nil {
		panic(err)
	}
	me, _ := io.ReadAll(out.Content)
	out.Content.Close()
	fmt.Println("me:", string(me))

	// Who are my running peers?
	p := ec2.NewDescribeInstancesPaginator(api, &ec2.DescribeInstancesInput{
		Filters: []types.Filter{
			{Name: aws.String("tag-key"), Values: []string{"multicast"}},
			{Name: aws.String("instance-state-name"), Values: []string{"running"}},
		},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			panic(err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				fmt.Println(aws.ToString(in.InstanceId), aws.ToString(in.PrivateIpAddress), aws.ToString(in.Tags[0].Value))
			}
		}
	}
	// Output:
	// me: i-0000000000000001
	// i-0000000000000001 198.18.0.1 demo,198.19.0.1/24
	// i-0000000000000002 198.18.0.2 demo,198.19.0.2/24
}
