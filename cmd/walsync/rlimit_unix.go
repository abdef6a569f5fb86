//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// logFileLimit logs the descriptor limit the watcher runs with. Go raises
// the soft limit to the hard one at start (os package, Go 1.19 and later);
// what is left to say is how many databases that allows, since each one
// followed holds several (docs/ARCHITECTURE.md, "The engine").
func logFileLimit(log *slog.Logger, databases int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	log.Info("descriptor limit", "soft", rl.Cur, "hard", rl.Max, "databases", databases)
}
