package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/walsync/walsync"
	"github.com/walsync/walsync/internal/fsys"
)

// A snapshot is read in three stages, each in its own goroutine, so that
// the work of one object spreads over the cores:
//
//	stored bytes ──► read, SHA-256 of the stored bytes   (stage 1)
//	             ──► header, zstd, content SHA-256        (stage 2: walsync.ObjectReader)
//	             ──► write into the output                (stage 3: the caller)
//
// Stages hand each other blocks of pipeBlock bytes through channels; each
// side owns pipeDepth+1 blocks, so the pipeline holds at most
// 2 × (pipeDepth+1) × pipeBlock bytes (2.5 MiB) besides the zstd window,
// whatever the size of the snapshot.
const (
	pipeBlock = 256 << 10
	pipeDepth = 4
)

// readSnapshot streams one snapshot object into dst (io.Discard to only
// check it), verifying the stored bytes' SHA-256, the content's against
// the trailer and the content length against the header's page count.
// open opens the object's stored bytes (with the context to read them
// with). When anything is wrong the stored-bytes checksum is reported
// first: a flipped byte usually breaks decompression before the end, and
// "checksum mismatch" names the cause better than a decoder's message.
// A write error is reported at once (the rest of the object is not read).
// The header is returned whenever it could be read, even with an error.
// Without contentSHA the content's SHA-256 is not checked against the
// trailer (restore: see walsync.ObjectReader.SkipContentSHA256); verify
// checks it.
func readSnapshot(ctx context.Context, open func(context.Context) (*opened, error), ref snapshotRef, dst io.Writer, contentSHA bool) (walsync.ObjectHeader, error) {
	var none walsync.ObjectHeader
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o, err := open(pctx)
	if err != nil {
		return none, err
	}
	defer o.close()

	var wg sync.WaitGroup
	defer wg.Wait() // on every path, before o is closed

	// Stage 1: the stored bytes, hashed by o as they are read.
	raw, rawFree := make(chan []byte, pipeDepth), blocks(pipeDepth+1)
	var readEnd, verdict error // set before raw is closed
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(raw)
		for {
			var b []byte
			select {
			case b = <-rawFree:
			case <-pctx.Done():
				readEnd, verdict = pctx.Err(), pctx.Err()
				return
			}
			n, err := io.ReadFull(o, b)
			if n > 0 {
				select {
				case raw <- b[:n]:
				case <-pctx.Done():
					readEnd, verdict = pctx.Err(), pctx.Err()
					return
				}
			}
			if err != nil {
				readEnd = err
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					readEnd = io.EOF
				}
				verdict = o.verify() // reads nothing more at the end; names the object
				return
			}
		}
	}()

	// Stage 2: decode and check the content.
	dec, decFree := make(chan []byte, pipeDepth), blocks(pipeDepth+1)
	var (
		hdr    walsync.ObjectHeader
		n      int64 // content bytes
		decErr error // set before dec is closed
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(dec)
		rd := &blockReader{ctx: pctx, in: raw, free: rawFree, end: &readEnd}
		decErr = decodeSnapshot(pctx, rd, o.info.Size, ref.Key, contentSHA, &hdr, &n, dec, decFree)
		// Whatever happened, stage 1 reads and hashes the rest of the
		// stored bytes (the verdict comes first), unless cancelled.
		io.Copy(io.Discard, rd)
	}()

	// Stage 3: write.
	var writeErr error
	for b := range dec {
		if writeErr == nil {
			if _, err := dst.Write(b); err != nil {
				writeErr = err
				cancel()
			}
		}
		decFree <- b[:cap(b)]
	}
	wg.Wait()

	switch {
	case writeErr != nil && ctx.Err() == nil:
		return hdr, fmt.Errorf("write restored database: %w", writeErr)
	case ctx.Err() != nil:
		return hdr, ctx.Err()
	case verdict != nil:
		return hdr, verdict
	case decErr != nil:
		return hdr, decErr
	}
	if want := int64(hdr.PageCount) * int64(hdr.PageSize); n != want {
		return hdr, fmt.Errorf("%s: %w: %d bytes of content, header says %d pages of %d", ref.Key, walsync.ErrFormat, n, hdr.PageCount, hdr.PageSize)
	}
	return hdr, nil
}

// decodeSnapshot is stage 2: it reads the object's header and content from
// rd and sends the content in blocks taken from free.
func decodeSnapshot(ctx context.Context, rd io.Reader, size int64, key string, contentSHA bool, hdr *walsync.ObjectHeader, n *int64,
	out chan<- []byte, free <-chan []byte) error {
	or, err := walsync.NewObjectReader(rd, size)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer or.Close()
	if !contentSHA {
		or.SkipContentSHA256()
	}
	*hdr = or.Header
	if hdr.Kind != walsync.KindByteSnapshot {
		return fmt.Errorf("%s: %w: not a snapshot object", key, walsync.ErrFormat)
	}
	for {
		var b []byte
		select {
		case b = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		m := 0
		var rerr error
		for m < len(b) && rerr == nil {
			var k int
			k, rerr = or.Read(b[m:])
			m += k
		}
		*n += int64(m)
		if m > 0 {
			select {
			case out <- b[:m]:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch {
		case rerr == io.EOF: // the trailer matched
			return nil
		case rerr != nil && ctx.Err() != nil:
			return ctx.Err()
		case rerr != nil:
			return fmt.Errorf("%s: %w", key, rerr)
		}
	}
}

// blocks returns a channel holding n free blocks.
func blocks(n int) chan []byte {
	c := make(chan []byte, n)
	for range n {
		c <- alignedBlock(pipeBlock)
	}
	return c
}

// blockReader reads the blocks stage 1 sends, and gives each back once
// it is read. At the end it returns *end: io.EOF, or the read error.
type blockReader struct {
	ctx      context.Context
	in       <-chan []byte
	free     chan<- []byte
	cur, blk []byte
	end      *error
}

func (r *blockReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.blk != nil {
			r.free <- r.blk[:cap(r.blk)]
			r.blk = nil
		}
		select {
		case b, ok := <-r.in:
			if !ok {
				return 0, *r.end
			}
			r.blk, r.cur = b, b
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// snapshotWriter writes a snapshot's content into the temporary output
// from offset 0 on. Whole aligned blocks go through a second descriptor
// of the file opened for direct I/O (O_DIRECT, Linux): straight to the
// disk, bypassing the page cache. Buffered, every byte of the output
// needs a fresh page of the cache, and on a virtual machine whose free
// memory was handed back to the host, the kernel spends more CPU
// providing those pages (2.4 s per GiB measured, docs/BENCHMARKS.md) than
// restore spends on SHA-256 and zstd; direct, the writing goroutine
// mostly waits for the disk, and the restore does not push the
// application's pages out of the cache. The last, partial block, and
// everything on file systems without direct I/O, go through the page
// cache. The final fsync covers both.
type snapshotWriter struct {
	f      fsys.File
	direct fsys.File // nil: no direct I/O
	off    int64
	// directBytes counts what went through direct I/O (for tests).
	directBytes int64
}

// directIO can be turned off (tests).
var directIO = true

func newSnapshotWriter(o fsys.OS, f fsys.File) *snapshotWriter {
	w := &snapshotWriter{f: f}
	if !directIO {
		return w
	}
	if d, err := openUnbuffered(o, f.Name()); err == nil {
		w.direct = d
	}
	return w
}

func (w *snapshotWriter) Write(b []byte) (int, error) {
	if w.direct != nil && w.off%directAlign == 0 && aligned(b) {
		n, err := w.direct.WriteAt(b, w.off)
		w.off += int64(n)
		w.directBytes += int64(n)
		if err == nil || n > 0 || !errors.Is(err, syscall.EINVAL) {
			return n, err
		}
		// The file system takes no direct writes: the page cache from now on.
		w.direct.Close()
		w.direct = nil
	}
	n, err := w.f.WriteAt(b, w.off)
	w.off += int64(n)
	return n, err
}

// Close closes the direct descriptor; the file itself stays open.
func (w *snapshotWriter) Close() error {
	if w.direct == nil {
		return nil
	}
	err := w.direct.Close()
	w.direct = nil
	return err
}
