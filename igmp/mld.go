package igmp

import (
	"time"

	"github.com/meshcast/meshcast/mld"
)

// HandleMLD applies an MLD report or done that mld.Parse accepted,
// received on port at now, to the same table as IGMP: IPv6 groups are
// members of the table beside IPv4 ones, under the same caps, timers and
// rules. MLD is IGMP for IPv6 (RFC 3810 section 1): an MLDv1 report or done
// is applied as an IGMPv2 report or leave, and an MLDv2 report's records
// as an IGMPv3 report's, with the same record types and the same
// compatibility mode (section 8.3.2: with an MLDv1 listener present, BLOCK
// is ignored and TO_EX ignores its sources). Queries are not handled here
// (see HeardQuery). dst and the queries appended to it are as for Handle.
//
// Records for groups that are not Snooped (ff02::/16 and the narrower or
// reserved scopes) create no state. Records of unknown types, and with
// more sources than MaxSources, are refused and counted as mld_record and
// mld_cap_sources. HandleMLD allocates nothing for a message that changes
// no forwarding state.
func (t *Table) HandleMLD(port Port, m mld.Message, now time.Time, dst []Query) []Query {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changed = t.changed[:0]
	switch m.Type() {
	case mld.TypeV1Report:
		dst = t.handleRecord(port, 2, ModeIsExclude, m.Group(), nil, now, dst)
	case mld.TypeV1Done:
		dst = t.handleRecord(port, 2, ChangeToInclude, m.Group(), nil, now, dst)
	case mld.TypeV2Report:
		for it := m.Records(); ; {
			r, ok := it.Next()
			if !ok {
				break
			}
			dst = handleV3Record(t, famIPv6, port, r, now, dst)
		}
	}
	t.publishChangedLocked()
	return dst
}
