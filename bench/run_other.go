//go:build !linux

package bench

import (
	"context"
	"errors"
	"io"
)

// Run needs Linux network namespaces; elsewhere it returns an error.
func Run(ctx context.Context, opts Options, out io.Writer) (*Report, error) {
	return nil, errors.New("bench: the harness needs Linux (network namespaces, TAP, VXLAN)")
}
