package discovery

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// Source lists the instances of every community it can see. A failed
// listing returns an error and the caller keeps the peers it had: an API
// error never tears down a working mesh.
type Source interface {
	// Name is "static" or "ec2", for logs and status.
	Name() string
	// Members lists the current members of all communities.
	Members(ctx context.Context) ([]Member, error)
}

// Static is the inventory file as a Source. It is read anew on every
// listing; Changed reports whether the file changed since the last read,
// so a caller can poll it cheaply. Members and Changed are safe to call
// from different goroutines (the reconciler lists while a watcher polls).
type Static struct {
	Path string

	mu    sync.Mutex
	stamp fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// Name implements Source.
func (s *Static) Name() string { return "static" }

// Members implements Source: it parses the file.
func (s *Static) Members(context.Context) ([]Member, error) {
	st, err := stampOf(s.Path)
	if err == nil {
		s.mu.Lock()
		s.stamp = st
		s.mu.Unlock()
	}
	return LoadInventory(s.Path)
}

// Changed reports whether the file's modification time, size or inode
// differs from when Members last read it.
func (s *Static) Changed() bool {
	st, err := stampOf(s.Path)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return st != s.stamp
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), ino: inode(fi)}, nil
}

// Problem is an instance left out of the mesh, and why.
type Problem struct {
	ID     string // instance ID or FILE:LINE
	Reason string // counter name, such as "malformed_tag"
	Detail string // what is wrong and what to do
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s", p.ID, p.Detail) }
