package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
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

// ProblemLog keeps the problems of the last listing, counts them by
// reason across listings, and logs each member's problem once, and again
// when what is wrong with it changes. Set Msg, IDKey and Logger before
// the first Record. It is safe for concurrent use.
type ProblemLog struct {
	Msg    string       // the log message
	IDKey  string       // the log attribute naming the member
	Logger *slog.Logger // default slog.Default()

	mu       sync.Mutex
	problems []Problem
	reported map[string]string // ID -> detail last logged
	counts   map[string]uint64 // problems by reason, cumulative
}

// Record replaces the problems with those of a listing, counts them and
// logs the new ones.
func (l *ProblemLog) Record(problems []Problem) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts, l.reported = map[string]uint64{}, map[string]string{}
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	l.problems = problems
	now := make(map[string]bool, len(problems))
	for _, p := range problems {
		now[p.ID] = true
		l.counts[p.Reason]++
		if l.reported[p.ID] != p.Detail {
			l.reported[p.ID] = p.Detail
			log.Warn(l.Msg, l.IDKey, p.ID, "reason", p.Reason, "detail", p.Detail)
		}
	}
	for id := range l.reported {
		if !now[id] {
			delete(l.reported, id)
		}
	}
}

// Problems returns the problems of the last listing.
func (l *ProblemLog) Problems() []Problem {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.problems)
}

// Counts returns how often each problem was seen, by reason, across all
// listings.
func (l *ProblemLog) Counts() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]uint64, len(l.counts))
	for k, v := range l.counts {
		m[k] = v
	}
	return m
}
