// Command meshcast is a userspace overlay multicast router. Run one daemon
// per instance of a community with `meshcast run`; see the README.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses of the contract in DESIGN.md.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// version is set by the linker (-X main.version=...).
var version = "dev"

const usage = `meshcast: overlay IP multicast for networks that carry only unicast

Usage:
  meshcast run --peers FILE [flags]   run the daemon in the foreground
  meshcast version                    print the version
  meshcast help                       print this help

Run 'meshcast run --help' for the daemon's flags.
`

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs meshcast with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "meshcast %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "meshcast: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
