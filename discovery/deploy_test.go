package discovery

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/meshcast/meshcast/internal/nstest"
)

// TestDeployPolicyMatchesCode checks that deploy/iam-policy.json grants
// exactly the EC2 actions this package calls, and that the CloudFormation
// template and the systemd unit agree with it.
func TestDeployPolicyMatchesCode(t *testing.T) {
	calls := regexp.MustCompile(`ec2\.New(\w+)Paginator\(|\.client\.(\w+)\(`)
	files, _ := filepath.Glob("*.go")
	want := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range calls.FindAllStringSubmatch(string(b), -1) {
			want["ec2:"+m[1]+m[2]] = true
		}
	}
	if len(want) == 0 {
		t.Fatal("found no EC2 calls in the code")
	}

	raw, err := os.ReadFile("../deploy/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		Statement []struct {
			Effect   string
			Action   []string
			Resource string
		}
	}
	if err := json.Unmarshal(raw, &policy); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	got := map[string]bool{}
	for _, s := range policy.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement effect %q", s.Effect)
		}
		for _, a := range s.Action {
			got[a] = true
		}
	}
	if !maps(got, want) {
		t.Fatalf("policy grants %v, the code calls %v", keys(got), keys(want))
	}

	cfn, err := os.ReadFile("../deploy/cloudformation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	actions := regexp.MustCompile(`(?m)^\s*-\s*(ec2:\w+)\s*$`).FindAllStringSubmatch(string(cfn), -1)
	cfnGot := map[string]bool{}
	for _, a := range actions {
		cfnGot[a[1]] = true
	}
	if !maps(cfnGot, want) {
		t.Errorf("CloudFormation grants %v, the code calls %v", keys(cfnGot), keys(want))
	}
	for _, s := range []string{`IpProtocol: "47"`, "IpProtocol: udp", "SourceSecurityGroupId: !GetAtt MeshcastSecurityGroup.GroupId", "AWS::IAM::InstanceProfile"} {
		if !strings.Contains(string(cfn), s) {
			t.Errorf("CloudFormation template lacks %q", s)
		}
	}
	unit, err := os.ReadFile("../deploy/meshcast.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW", "--discovery ec2", "ProtectSystem=strict", "NoNewPrivileges=yes"} {
		if !strings.Contains(string(unit), s) {
			t.Errorf("systemd unit lacks %q", s)
		}
	}
}

func maps(a, b map[string]bool) bool {
	return slices.Equal(keys(a), keys(b))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on
// deploy/meshcast.service, as installed but for the binary's path: the
// unit's ExecStart names /usr/local/bin/meshcast, which `make install`
// puts there, so the copy verified names an executable that exists here
// (this test's own binary). make deps installs systemd where
// systemd-analyze is missing.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		nstest.SkipOrFail(t, "no systemd-analyze to verify the unit with (apt-get install systemd): %v", err)
	}
	unit, err := os.ReadFile("../deploy/meshcast.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/meshcast ") {
		t.Fatalf("the unit's ExecStart does not run /usr/local/bin/meshcast:\n%s", unit)
	}
	path := filepath.Join(t.TempDir(), "meshcast.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/meshcast", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify deploy/meshcast.service: %v\n%s", err, out)
	}
}

// TestDeployTemplateTunnelsFromMembers parses deploy/cloudformation.yaml
// and checks its security group: GRE (IP protocol 47) and VXLAN (UDP,
// the VXLANPort parameter, 4789 by default) are admitted in and let out
// only between members of the group. Every rule names the group itself,
// never an address range, and such a rule covers IPv4 and IPv6 alike, so
// dual-stack and IPv6-only members reach each other. It also checks the
// launch template's metadata options (IMDSv2 and the IPv6 endpoint that an
// instance without IPv4 needs) and that every !Ref and !GetAtt resolves.
func TestDeployTemplateTunnelsFromMembers(t *testing.T) {
	tpl := loadTemplate(t, "../deploy/cloudformation.yaml")
	params := mapAt(t, tpl, "Parameters")
	resources := mapAt(t, tpl, "Resources")
	self := getAtt("MeshcastSecurityGroup", "GroupId")

	walkTemplate(tpl, func(m map[string]any) {
		if ref, ok := m["Ref"].(string); ok {
			if params[ref] == nil && resources[ref] == nil && !strings.HasPrefix(ref, "AWS::") {
				t.Errorf("!Ref %s names no parameter or resource", ref)
			}
		}
		if ga, ok := m["Fn::GetAtt"].([]any); ok && len(ga) == 2 {
			if name, _ := ga[0].(string); resources[name] == nil {
				t.Errorf("!GetAtt %v names no resource", ga)
			}
		}
	})

	if port := mapAt(t, params, "VXLANPort")["Default"]; port != 4789 {
		t.Errorf("VXLANPort defaults to %v, want 4789", port)
	}
	vxlanPort := map[string]any{"Ref": "VXLANPort"}

	found := map[string]string{}
	for name, r := range resources {
		res, _ := r.(map[string]any)
		props, _ := res["Properties"].(map[string]any)
		var dir, peer string
		switch res["Type"] {
		case "AWS::EC2::SecurityGroup":
			// Inline rules would replace the outbound rules EC2 gives the
			// group, and inline self-references cannot be written.
			for _, k := range []string{"SecurityGroupIngress", "SecurityGroupEgress"} {
				if props[k] != nil {
					t.Errorf("%s: inline %s", name, k)
				}
			}
			continue
		case "AWS::EC2::SecurityGroupIngress":
			dir, peer = "ingress", "SourceSecurityGroupId"
		case "AWS::EC2::SecurityGroupEgress":
			dir, peer = "egress", "DestinationSecurityGroupId"
		default:
			continue
		}
		for _, k := range []string{"CidrIp", "CidrIpv6", "SourcePrefixListId", "DestinationPrefixListId"} {
			if props[k] != nil {
				t.Errorf("%s: %s %v reaches beyond the group's members", name, k, props[k])
			}
		}
		if !reflect.DeepEqual(props["GroupId"], self) {
			t.Errorf("%s: GroupId %v, want the meshcast group", name, props["GroupId"])
		}
		if !reflect.DeepEqual(props[peer], self) {
			t.Errorf("%s: %s %v, want the group itself (its members, over IPv4 and IPv6)", name, peer, props[peer])
		}
		if d, _ := props["Description"].(string); !strings.Contains(d, "IPv6") {
			t.Errorf("%s: description %q does not say the rule covers IPv6", name, d)
		}
		proto := fmt.Sprint(props["IpProtocol"])
		switch proto {
		case "47":
			if props["FromPort"] != nil || props["ToPort"] != nil {
				t.Errorf("%s: GRE rule with ports %v-%v", name, props["FromPort"], props["ToPort"])
			}
		case "udp":
			if !reflect.DeepEqual(props["FromPort"], vxlanPort) || !reflect.DeepEqual(props["ToPort"], vxlanPort) {
				t.Errorf("%s: UDP ports %v-%v, want !Ref VXLANPort", name, props["FromPort"], props["ToPort"])
			}
		default:
			t.Errorf("%s: unexpected protocol %q", name, proto)
		}
		key := dir + " " + proto
		if prev, dup := found[key]; dup {
			t.Errorf("%s and %s are both %s rules", prev, name, key)
		}
		found[key] = name
	}
	for _, want := range []string{"ingress 47", "ingress udp", "egress 47", "egress udp"} {
		if found[want] == "" {
			t.Errorf("no %s rule between members (have %v)", want, found)
		}
	}

	imds := mapAt(t, params, "ImdsIpv6Endpoint")
	if imds["Default"] != "enabled" || !reflect.DeepEqual(imds["AllowedValues"], []any{"enabled", "disabled"}) {
		t.Errorf("ImdsIpv6Endpoint: default %v, allowed %v; want enabled of [enabled disabled]", imds["Default"], imds["AllowedValues"])
	}
	lt := mapAt(t, mapAt(t, mapAt(t, resources, "MeshcastLaunchTemplate"), "Properties"), "LaunchTemplateData")
	if r := mapAt(t, resources, "MeshcastLaunchTemplate")["Type"]; r != "AWS::EC2::LaunchTemplate" {
		t.Errorf("MeshcastLaunchTemplate is a %v", r)
	}
	meta := mapAt(t, lt, "MetadataOptions")
	for k, want := range map[string]any{
		"HttpEndpoint":     "enabled",
		"HttpTokens":       "required",
		"HttpProtocolIpv6": map[string]any{"Ref": "ImdsIpv6Endpoint"},
	} {
		if !reflect.DeepEqual(meta[k], want) {
			t.Errorf("launch template MetadataOptions.%s = %v, want %v", k, meta[k], want)
		}
	}
	if arn := mapAt(t, lt, "IamInstanceProfile")["Arn"]; !reflect.DeepEqual(arn, getAtt("MeshcastInstanceProfile", "Arn")) {
		t.Errorf("launch template instance profile %v", arn)
	}
	if !reflect.DeepEqual(lt["SecurityGroupIds"], []any{self}) {
		t.Errorf("launch template security groups %v, want the meshcast group", lt["SecurityGroupIds"])
	}
}

// TestDeployTemplateLints runs cfn-lint, the CloudFormation linter, on
// deploy/cloudformation.yaml where it is installed (pip install cfn-lint).
func TestDeployTemplateLints(t *testing.T) {
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("no cfn-lint to check the template with (pip install cfn-lint)")
	}
	out, err := exec.Command(lint, "--", "../deploy/cloudformation.yaml").CombinedOutput()
	if err != nil {
		t.Errorf("cfn-lint deploy/cloudformation.yaml: %v\n%s", err, out)
	}
}

// loadTemplate reads a CloudFormation template written in YAML, short
// tags included, into maps, slices and scalars. A tagged node becomes the
// long form: !Ref X is {"Ref": "X"}, !GetAtt A.B is {"Fn::GetAtt": [A B]},
// !Sub s is {"Fn::Sub": s}.
func loadTemplate(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v, err := cfnValue(&doc)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: the template is a %T, not a mapping", path, v)
	}
	return m
}

func cfnValue(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("line %d: %d documents", n.Line, len(n.Content))
		}
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("line %d: key %q twice", n.Content[i].Line, k)
			}
			val, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k] = val
		}
		v = m
	case yaml.SequenceNode:
		s := []any{}
		for _, c := range n.Content {
			val, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		v = s
	case yaml.ScalarNode:
		if strings.HasPrefix(n.Tag, "!!") || n.Tag == "" {
			if err := n.Decode(&v); err != nil {
				return nil, fmt.Errorf("line %d: %v", n.Line, err)
			}
			return v, nil
		}
		v = n.Value
	default:
		return nil, fmt.Errorf("line %d: unexpected YAML node kind %v", n.Line, n.Kind)
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	fn := strings.TrimPrefix(n.Tag, "!")
	switch fn {
	case "Ref", "Condition":
		return map[string]any{fn: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, ok := strings.Cut(s, ".")
			if !ok {
				return nil, fmt.Errorf("line %d: !GetAtt %q has no attribute", n.Line, s)
			}
			v = []any{res, attr}
		}
	}
	return map[string]any{"Fn::" + fn: v}, nil
}

// walkTemplate calls f on every mapping in v.
func walkTemplate(v any, f func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, c := range v {
			walkTemplate(c, f)
		}
	case []any:
		for _, c := range v {
			walkTemplate(c, f)
		}
	}
}

func mapAt(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("%s is missing or not a mapping (%T)", key, m[key])
	}
	return v
}

func getAtt(resource, attr string) map[string]any {
	return map[string]any{"Fn::GetAtt": []any{resource, attr}}
}
