package discovery

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

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
