package wal_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"slices"

	"github.com/walsync/walsync/wal"
)

// Find the committed content of a WAL, for example to snapshot a live
// database: its size and, for every page, the frame holding its latest
// committed version.
func ExampleReadIndex() {
	f, err := os.Open("testdata/uncommitted-1024/wal")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	idx, err := wal.ReadIndex(f)
	if errors.Is(err, wal.ErrNoHeader) {
		fmt.Println("empty WAL: the database file is current")
		return
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("page size %d, last commit at frame %d, database %d pages\n",
		idx.Header.PageSize, idx.MaxFrame, idx.DBSize)
	for _, pgno := range slices.Sorted(func(yield func(uint32) bool) {
		for p := range idx.Pages {
			if !yield(p) {
				return
			}
		}
	}) {
		off, _ := idx.PageOffset(pgno)
		fmt.Printf("page %d: frame %d, data at offset %d\n", pgno, idx.Pages[pgno], off)
	}
	// Output:
	// page size 1024, last commit at frame 4, database 2 pages
	// page 1: frame 1, data at offset 56
	// page 2: frame 4, data at offset 3200
}

// Walk the frames of a WAL. The Scanner stops at the first frame that is
// not valid: here the last frame was torn.
func ExampleScanner() {
	f, err := os.Open("testdata/torn-1024/wal")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	s, err := wal.NewScanner(f)
	if err != nil {
		log.Fatal(err)
	}
	for s.Next() {
		i, fh, off := s.Frame()
		fmt.Printf("frame %d at %d: page %d, commit %v (db size %d), %d bytes\n",
			i, off, fh.Pgno, fh.IsCommit(), fh.Commit, len(s.Data()))
	}
	if err := s.Err(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// frame 1 at 32: page 1, commit false (db size 0), 1024 bytes
	// frame 2 at 1080: page 2, commit true (db size 2), 1024 bytes
	// frame 3 at 2128: page 2, commit true (db size 2), 1024 bytes
	// frame 4 at 3176: page 1, commit false (db size 0), 1024 bytes
	// frame 5 at 4224: page 2, commit false (db size 0), 1024 bytes
	// frame 6 at 5272: page 3, commit false (db size 0), 1024 bytes
	// frame 7 at 6320: page 4, commit false (db size 0), 1024 bytes
}

// Follow a WAL: resume after the last commit frame seen instead of
// rescanning, and ship frames only once their transaction has committed.
func ExampleNewScannerAt() {
	f, err := os.Open("testdata/commits-1024/wal")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	// Position saved earlier: after commit frame 3.
	hdr, err := wal.ReadHeader(f)
	if err != nil {
		log.Fatal(err)
	}
	s, err := wal.NewScanner(f)
	if err != nil {
		log.Fatal(err)
	}
	for s.Next() {
		if i, _, _ := s.Frame(); i == 3 {
			break
		}
	}
	index, _, _ := s.Frame()
	c1, c2 := s.Checksum()

	// Later: resume from there.
	s, err = wal.NewScannerAt(f, hdr, index, c1, c2)
	if err != nil {
		log.Fatal(err)
	}
	var pending []uint32
	for s.Next() {
		i, fh, _ := s.Frame()
		pending = append(pending, i) // a real follower would copy s.FrameBytes()
		if fh.IsCommit() {
			fmt.Printf("ship frames %v (db size %d)\n", pending, fh.Commit)
			pending = pending[:0]
		}
	}
	// Output:
	// ship frames [4 5 6 7 8] (db size 5)
	// ship frames [9] (db size 5)
	// ship frames [10] (db size 5)
}
