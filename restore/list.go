package restore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/walsync/walsync"
)

// DBInfo summarises what is stored for one database name. The JSON field
// names are the ones `walsync list --json` promises (SPEC, "The CLI").
type DBInfo struct {
	Name           string     `json:"name"`
	Snapshots      int        `json:"snapshots"`
	LatestSnapshot *time.Time `json:"latest_snapshot"`
	LatestWAL      *time.Time `json:"latest_wal"`
	Segments       int        `json:"wal_segments"`
	// Size is the number of bytes stored for the name: its snapshots and
	// segments.
	Size int64 `json:"size"`
}

// List reads the bucket and summarises every database in it, sorted by
// name: every fact comes from the listing. Objects outside the layout are
// ignored, and so are the index (state.json, which may be missing, stale
// or corrupted: the answer is the same) and the writer's lock.json; a name
// with neither snapshot nor segment is not listed.
func List(ctx context.Context, st walsync.Storage) ([]DBInfo, error) {
	byName := map[string]*DBInfo{}
	for obj, err := range st.List(ctx, "") {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", st, err)
		}
		k, ok := walsync.ParseKey(obj.Key)
		if !ok || (k.Kind != walsync.KindSnapshot && k.Kind != walsync.KindSegment) {
			continue
		}
		d := byName[k.Name]
		if d == nil {
			d = &DBInfo{Name: k.Name}
			byName[k.Name] = d
		}
		d.Size += obj.Size
		t := k.Time
		switch k.Kind {
		case walsync.KindSnapshot:
			d.Snapshots++
			if d.LatestSnapshot == nil || t.After(*d.LatestSnapshot) {
				d.LatestSnapshot = &t
			}
		case walsync.KindSegment:
			d.Segments++
			if d.LatestWAL == nil || t.After(*d.LatestWAL) {
				d.LatestWAL = &t
			}
		}
	}
	out := make([]DBInfo, 0, len(byName))
	for _, d := range byName {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DBInfo) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}
