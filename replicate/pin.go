package replicate

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// pinConn is a bare SQLite connection (no database/sql pool, no
// goroutine) used only to hold a read transaction, or briefly the write
// lock. Its whole job is to make SQLite's own locking keep frames in place
// until walsync has copied them; it never changes the database.
type pinConn struct {
	conn *sqlite3.SQLiteConn
	path string
	busy time.Duration // the connection's busy timeout
	open bool          // a transaction is open
}

// openPin opens a connection to the database at path. The file must exist.
func openPin(path string, busy time.Duration) (*pinConn, error) {
	u := url.URL{Path: path}
	dsn := fmt.Sprintf("file:%s?mode=rw&_busy_timeout=%d", u.EscapedPath(), busy.Milliseconds())
	c, err := (&sqlite3.SQLiteDriver{}).Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, sqliteErr(err))
	}
	p := &pinConn{conn: c.(*sqlite3.SQLiteConn), path: path, busy: busy}
	// Keep the WAL when this is the last connection to close: walsync's
	// own exit must not checkpoint and delete the WAL, or the next start
	// could not prove that no frame was lost in between.
	if err := p.conn.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1); err != nil {
		p.conn.Close()
		return nil, fmt.Errorf("open %s: persist WAL: %w", path, sqliteErr(err))
	}
	return p, nil
}

func (p *pinConn) exec(q string) error {
	if _, err := p.conn.Exec(q, nil); err != nil {
		return sqliteErr(err)
	}
	return nil
}

// begin opens a read transaction on the newest commit. Reading the
// schema cookie starts it without parsing the schema, which a connection
// opened for one cycle (DB.spare) would otherwise do each time.
func (p *pinConn) begin() error {
	if err := p.exec("BEGIN; PRAGMA schema_version"); err != nil {
		p.exec("ROLLBACK") //nolint:errcheck // ends whatever BEGIN started
		return fmt.Errorf("begin read transaction on %s: %w", p.path, err)
	}
	p.open = true
	return nil
}

// lockWriters takes the write lock (and a read transaction on the newest
// commit): no other connection can commit until end. It tries every 100 µs
// for up to the busy timeout rather than through SQLite's busy handler,
// whose sleeps grow to 100 ms: an application committing in a tight loop
// holds the lock nearly all the time, and such sleeps missed every gap for
// seconds (3.7 s measured, with 131,000 frames written meanwhile).
//
// yield, when not nil, is asked while the lock is taken by someone else:
// true gives up at once with errYield. The caller holds d.mu, under
// which alone walsync's pin moves; an application's RESTART or TRUNCATE
// checkpoint holds the write lock while it waits for that pin, so waiting
// for the lock then would make each wait for the other until a busy
// timeout runs out.
func (p *pinConn) lockWriters(yield func() bool) error {
	if err := p.exec("PRAGMA busy_timeout=0"); err != nil {
		return fmt.Errorf("lock %s against writers: %w", p.path, err)
	}
	defer p.exec(fmt.Sprintf("PRAGMA busy_timeout=%d", p.busy.Milliseconds())) //nolint:errcheck // only the wait strategy
	deadline := time.Now().Add(p.busy)
	for {
		_, err := p.conn.Exec("BEGIN IMMEDIATE", nil)
		if err == nil {
			p.open = true
			return nil
		}
		var se sqlite3.Error
		if !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || time.Now().After(deadline) {
			return fmt.Errorf("lock %s against writers: %w", p.path, sqliteErr(err))
		}
		if yield != nil && yield() {
			return fmt.Errorf("lock %s against writers: %w", p.path, errYield)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// end ends the open transaction, if any.
func (p *pinConn) end() error {
	if !p.open {
		return nil
	}
	p.open = false
	if err := p.exec("ROLLBACK"); err != nil {
		return fmt.Errorf("end transaction on %s: %w", p.path, err)
	}
	return nil
}

// journalMode returns the database's journal mode, lower case.
func (p *pinConn) journalMode() (string, error) { return p.pragmaJournalMode("") }

// pragmaJournalMode runs PRAGMA journal_mode (=set, when not "") and
// returns the mode the database is in after it, lower case.
func (p *pinConn) pragmaJournalMode(set string) (string, error) {
	q := "PRAGMA journal_mode"
	if set != "" {
		q += "=" + set
	}
	rows, err := p.conn.Query(q, nil)
	if err != nil {
		return "", sqliteErr(err)
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		return "", sqliteErr(err)
	}
	s, _ := dest[0].(string)
	return strings.ToLower(s), nil
}

// SwitchToWAL puts the database at path in WAL mode, on a connection of
// its own that waits for no lock (another connection using the database
// in rollback mode makes it fail with "database is locked": try again
// later), and returns the journal mode the database is in after it. The
// WAL stays when that connection closes (PERSIST_WAL).
func SwitchToWAL(path string) (string, error) {
	p, err := openPin(path, 0)
	if err != nil {
		return "", err
	}
	defer p.close() //nolint:errcheck // a read-only close
	return p.pragmaJournalMode("WAL")
}

func (p *pinConn) close() error {
	p.end() //nolint:errcheck // Close ends it anyway
	return p.conn.Close()
}
