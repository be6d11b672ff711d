// Command meshcast is a userspace overlay multicast router. Run one daemon
// per instance of a community with `meshcast run`; see the README.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Exit statuses of the contract in DESIGN.md.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// version is set by the linker (-X main.version=...).
var version = "dev"

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit status out of a command.
type exitError struct {
	code int
	err  error // nil: nothing more to print
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// Main runs meshcast with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "meshcast: %v\n", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors: unknown commands and flags.
	fmt.Fprintf(stderr, "meshcast: %v\nRun 'meshcast --help' for usage.\n", err)
	return exitUsage
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "meshcast",
		Short: "Overlay IP multicast for networks that carry only unicast",
		Long: `meshcast gives IP multicast to networks that carry only unicast, such as an
Amazon VPC. Every instance of a community runs one daemon, which holds the
instance's overlay address on a TAP device and carries each frame to the peers
that want it inside GRE or VXLAN, snooping IGMP to prune.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Help()
			return &exitError{code: exitUsage}
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(stderr), newStatusCmd(stdout), newPingCmd(stdout), newVersionCmd(stdout))
	root.InitDefaultCompletionCmd()
	return root
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintf(stdout, "meshcast %s\n", buildVersion())
		},
	}
}

func newRunCmd(stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [flags]",
		Short: "Run the daemon in the foreground",
		Long: `Run the meshcast daemon in the foreground, logging to stderr.

Peers come from an inventory file (--peers, re-read when it changes and on
SIGHUP) or from EC2 instance tags (--discovery ec2). SIGINT or SIGTERM stop the
daemon and remove its TAP device and control socket, unless systemd's file
descriptor store keeps the TAP for the next start; SIGHUP re-reads the
inventory and the config file's reloadable settings (log-level, unregistered,
interval).

To upgrade or restart without applications noticing, start the new daemon
with the same settings and --takeover: it takes the TAP, the sockets and the
state from the running one, which then exits 0 without removing anything.

Exit status: 0 after SIGINT or SIGTERM or a handover to a successor, 1 on a
runtime failure (such as a takeover that failed: the running daemon goes on),
2 on a usage or configuration error (such as a daemon of the community already
running without --takeover).`,
		Example: `  meshcast run --peers /etc/meshcast/peers
  meshcast run --peers /etc/meshcast/peers --encap vxlan --local 198.18.0.2
  meshcast run --discovery ec2 --metrics 127.0.0.1:9977
  meshcast run --config /etc/meshcast/meshcast.yaml
  meshcast run --peers /etc/meshcast/peers --takeover   # upgrade in place`,
		// The flags are parsed by parseRun, so that SIGHUP can parse them
		// again with the config file; they are defined here for help.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := parseRun(args)
			if errors.Is(err, pflag.ErrHelp) {
				return cmd.Help()
			}
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			cfg.args = args
			log, level := newLogger(stderr, cfg.logLevel, cfg.logFormat)
			cfg.levelVar = level
			if err := runDaemon(&cfg, log); err != nil {
				var ue *usageError
				if errors.As(err, &ue) || errors.Is(err, errAlreadyRunning) {
					return &exitError{code: exitUsage, err: err}
				}
				log.Error("meshcast stopped", "err", err)
				return &exitError{code: exitRuntime}
			}
			return nil
		},
	}
	var throwaway runConfig
	addRunFlags(cmd.Flags(), &throwaway)
	return cmd
}

// parseRun parses the flags of `meshcast run`, applies the config file
// under them, and checks the result.
func parseRun(args []string) (runConfig, error) {
	var cfg runConfig
	fs := pflag.NewFlagSet("meshcast run", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	check := addRunFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return cfg, err
		}
		return cfg, usagef("%v (see meshcast run --help)", err)
	}
	if fs.NArg() > 0 {
		return cfg, usagef("unexpected argument %q: meshcast run takes only flags", fs.Arg(0))
	}
	if err := applyConfigFile(fs, cfg.configFile); err != nil {
		return cfg, err
	}
	return cfg, check()
}

// maxConfigSize bounds the config file.
const maxConfigSize = 1 << 20

// applyConfigFile sets every flag the YAML file at path names and the
// command line did not. Its keys are the long flag names.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return usagef("--config %s: %v", path, err)
	}
	if len(b) > maxConfigSize {
		return usagef("%s: larger than %d bytes", path, maxConfigSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return usagef("%s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return usagef("%s:%d: want a mapping of flag names to values, such as 'encap: vxlan'", path, m.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if line, dup := seen[k.Value]; dup {
			return usagef("%s:%d: key %q already defined at line %d", path, k.Line, k.Value, line)
		}
		seen[k.Value] = k.Line
		fl := fs.Lookup(k.Value)
		if fl == nil || k.Value == "config" {
			return usagef("%s:%d: unknown key %q: the keys are the long flags of meshcast run, such as encap or igmp-query-interval", path, k.Line, k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return usagef("%s:%d: %s takes one value, not a list or a mapping", path, v.Line, k.Value)
		}
		if fl.Changed {
			continue // the command line wins
		}
		if err := fs.Set(k.Value, v.Value); err != nil {
			return usagef("%s:%d: %s: %v", path, v.Line, k.Value, err)
		}
	}
	return nil
}
