//go:build !linux

package bench

import "io"

// isTerminal reports false: the in-place bar is for Linux terminals.
func isTerminal(io.Writer) bool { return false }
