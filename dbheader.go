package walsync

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DBHeaderSize is the size of the SQLite database header at the start of
// page 1 (https://www.sqlite.org/fileformat2.html#the_database_header).
const DBHeaderSize = 100

// ErrNotSQLite means a file does not start with the SQLite header.
var ErrNotSQLite = errors.New("walsync: not a SQLite database")

// DBHeader holds the fields of the database header walsync uses.
type DBHeader struct {
	PageSize      uint32 // 512..65536
	WriteVersion  byte   // 1 legacy (rollback journal), 2 WAL
	ReadVersion   byte
	ChangeCounter uint32 // offset 24
	PageCount     uint32 // offset 28, the "in-header database size"
	VersionValid  uint32 // offset 92, "version-valid-for"
}

// ParseDBHeader decodes the first 100 bytes of a database file.
func ParseDBHeader(b []byte) (DBHeader, error) {
	var h DBHeader
	if len(b) < DBHeaderSize || string(b[:16]) != "SQLite format 3\x00" {
		return h, ErrNotSQLite
	}
	ps := uint32(binary.BigEndian.Uint16(b[16:]))
	if ps == 1 {
		ps = 65536
	}
	if !ValidPageSize(ps) {
		return h, fmt.Errorf("%w: invalid page size %d in header", ErrNotSQLite, ps)
	}
	h.PageSize = ps
	h.WriteVersion, h.ReadVersion = b[18], b[19]
	h.ChangeCounter = binary.BigEndian.Uint32(b[24:])
	h.PageCount = binary.BigEndian.Uint32(b[28:])
	h.VersionValid = binary.BigEndian.Uint32(b[92:])
	return h, nil
}
