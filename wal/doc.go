// Package wal reads and validates the SQLite write-ahead log format.
//
// The format is specified at https://www.sqlite.org/fileformat2.html#walformat.
// A WAL file is a 32-byte header followed by zero or more frames; each frame
// is a 24-byte frame header followed by one page of data. All integers are
// unsigned 32-bit big-endian.
//
// # WAL header (HeaderSize = 32 bytes)
//
//	offset  0        4        8        12       16       20       24       28       32
//	        +--------+--------+--------+--------+--------+--------+--------+--------+
//	        | magic  |version |pagesize| ckpt   | salt-1 | salt-2 | cksum-1| cksum-2|
//	        +--------+--------+--------+--------+--------+--------+--------+--------+
//	        |<------------ covered by the header checksum ------->|
//
//	magic     0x377f0682 (MagicLE) or 0x377f0683 (MagicBE); the low bit selects
//	          the byte order of the words summed by the checksum (1 = big-endian)
//	version   3007000
//	pagesize  database page size: a power of two in 512..65536 (65536 is
//	          stored as 65536 here, unlike the database header which stores 1)
//	ckpt      checkpoint sequence number, incremented on every WAL reset
//	salt-1    incremented on every WAL reset
//	salt-2    a fresh random value on every WAL reset
//	cksum-1/2 Checksum over bytes 0..23, starting from (0, 0)
//
// # Frame (FrameHeaderSize = 24 bytes + pagesize bytes)
//
//	offset  0        4        8        12       16       20       24
//	        +--------+--------+--------+--------+--------+--------+-------------------+
//	        | pgno   | commit | salt-1 | salt-2 | cksum-1| cksum-2| page data ...     |
//	        +--------+--------+--------+--------+--------+--------+-------------------+
//	        |<--- summed ---->|                                   |<--- summed ------>|
//
//	pgno      page number of the page image that follows (never 0)
//	commit    for a commit frame, the size of the database in pages after
//	          the commit; 0 for every other frame
//	salt-1/2  copies of the header's salts
//	cksum-1/2 cumulative checksum: continues from the previous frame's
//	          checksum (the header checksum for frame 1) over the frame's
//	          first 8 bytes and then its page data
//
// Frame n (1-based) starts at FrameOffset(pagesize, n) = 32 + (n-1)*(24+pagesize).
//
// # Validity
//
// A frame is valid when its salts equal the header's, its page number is not
// zero and its checksum matches the running checksum. Reading stops at the
// first invalid frame: everything after it is either a torn write, a rolled
// back transaction that is being overwritten, or a stale frame left over from
// before the WAL was last reset (those carry the previous salts). Of the valid
// frames, only those up to and including the last commit frame are part of
// the database; valid frames after it belong to a transaction still in
// progress (or one whose commit frame was torn) and must be ignored.
//
// # Use
//
// [ReadIndex] scans a whole WAL and reports the last commit frame and, for
// every page, the frame holding its latest committed version: the data
// needed to build a consistent snapshot from the database file plus the WAL.
// [Scanner] walks frames one at a time; [NewScannerAt] resumes from a known
// commit frame and running checksum so that a follower shipping frames does
// not rescan the file.
package wal
