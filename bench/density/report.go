package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func printReport(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var rs []*result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		r := new(result)
		if err := json.Unmarshal(sc.Bytes(), r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rs = append(rs, r)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// Group by N, walsync first.
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].N != rs[j].N {
			return rs[i].N < rs[j].N
		}
		return rs[i].Tool > rs[j].Tool
	})
	printTables(os.Stdout, rs)
	return nil
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func ops(os []opCount) string {
	if len(os) == 0 {
		return "none"
	}
	var parts []string
	for _, o := range os {
		parts = append(parts, fmt.Sprintf("%s %d", o.Op, o.N))
	}
	return strings.Join(parts, ", ")
}

func printTables(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "| tool | DBs | RSS under load p50 / max (MiB) | peak RSS, VmHWM (MiB) | CPU under load (% of a core) | requests per DB per minute under load | idle requests per DB per day | commit-to-durable lag p50 / p99 (ms) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		perMin := 0.0
		idleDay := 0.0
		if r.N > 0 && r.LoadSeconds > 0 {
			perMin = float64(r.LoadReq) / float64(r.N) / r.LoadSeconds * 60
		}
		if r.N > 0 && r.IdleSeconds > 0 {
			idleDay = float64(r.IdleReq) / float64(r.N) / r.IdleSeconds * 86400
		}
		fmt.Fprintf(w, "| %s | %d | %s / %s | %s | %.1f | %.1f | %.0f | %.0f / %.0f |\n",
			r.Tool, r.N, mib(r.RSSLoadP50KiB), mib(r.RSSLoadMaxKiB), mib(r.HWMKiB), r.CPULoadPct,
			perMin, idleDay, r.LagP50ms, r.LagP99ms)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| tool | DBs | version | start-up (s) | load (s) / commits / errors | requests under load, by operation | drain (s): requests by operation | idle (s): requests by operation (DBs touched) | lag p90 / max (ms), not durable, ties | lag lower bound p50 / p99 (ms) | capture to PUT p50 / p99 (ms) | fds, threads | log errors / warnings | exit |")
	fmt.Fprintln(w, "|---|---:|---|---:|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %d | %s | %.1f | %.0f / %d / %d | %s | %.0f: %s | %.0f: %s (%d) | %.0f / %.0f, %d, %d | %.0f / %.0f | %.0f / %.0f | %d, %d | %d / %d | %s |\n",
			r.Tool, r.N, r.Version, r.StartupSeconds, r.LoadSeconds, r.Commits, r.CommitErrors, ops(r.LoadOps), r.DrainSeconds, ops(r.DrainOps),
			r.IdleSeconds, ops(r.IdleOps), r.IdleDBs, r.LagP90ms, r.LagMaxms, r.NotDurable, r.Ties, r.LowerP50ms, r.LowerP99ms, r.QueueP50ms, r.QueueP99ms, r.FDs, r.Threads,
			r.LogErrors, r.LogWarnings, r.Exit)
	}
	for _, r := range rs {
		var notes []string
		if r.Replicated < r.N {
			notes = append(notes, fmt.Sprintf("only %d of %d databases had an object before the load", r.Replicated, r.N))
		}
		if r.Unstamped > 0 {
			notes = append(notes, fmt.Sprintf("%d WAL PUTs without a capture stamp (left out of the lag)", r.Unstamped))
		}
		if r.LowerNotDurable > 0 {
			notes = append(notes, fmt.Sprintf("%d commits with no WAL PUT starting after them", r.LowerNotDurable))
		}
		if r.CommitErr != "" {
			notes = append(notes, "last commit error: "+r.CommitErr)
		}
		if len(r.Failed) > 0 {
			var fs []string
			for k, v := range r.Failed {
				fs = append(fs, fmt.Sprintf("%s: %d", k, v))
			}
			sort.Strings(fs)
			notes = append(notes, "non-2xx answers: "+strings.Join(fs, ", "))
		}
		for _, e := range r.ProxyErrors {
			notes = append(notes, "proxy could not reach MinIO: "+e)
		}
		for _, l := range r.LogSample {
			notes = append(notes, "log: "+l)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "\n%s, %d DBs:\n", r.Tool, r.N)
			for _, n := range notes {
				fmt.Fprintf(w, "  - %s\n", n)
			}
		}
	}
}
