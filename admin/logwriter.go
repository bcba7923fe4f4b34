package admin

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLogBacklog bounds the log lines a LogWriter holds while its
// output is slow: a few seconds of access lines at full load.
const DefaultLogBacklog = 4 << 20

// LogWriter takes log lines into memory and writes them out in batches
// from a goroutine of its own, so that a request never waits for the
// write of its access line, and a burst of lines costs one write per
// batch instead of one per line (each was a system call, a tenth of a
// proxied request's time).
//
// When the output falls behind by more than the backlog, new lines are
// dropped, never silently: they are counted (Dropped, for the metrics),
// and the next batch written says how many were lost. Lines still in
// memory when the process is killed are lost with it; Close writes out
// the rest on a clean stop.
type LogWriter struct {
	out     io.Writer
	backlog int
	json    bool

	mu      sync.Mutex
	pending []byte
	lost    int // dropped since the last note in the output
	closed  bool

	dropped atomic.Uint64
	wake    chan struct{}
	done    chan struct{}
}

// LogWriterConfig configures a LogWriter.
type LogWriterConfig struct {
	// Out is where the lines go (the process's stderr).
	Out io.Writer
	// Backlog bounds the bytes held while Out is slow; DefaultLogBacklog
	// when 0 or less.
	Backlog int
	// JSON writes the note of dropped lines as JSON, as the other lines
	// are (log { format = "json" }).
	JSON bool
}

// NewLogWriter starts a LogWriter. Close it to write out the rest.
func NewLogWriter(cfg LogWriterConfig) *LogWriter {
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = DefaultLogBacklog
	}
	w := &LogWriter{out: cfg.Out, backlog: backlog, json: cfg.JSON, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Write takes one or more whole lines (a slog handler writes a record at
// once). It never blocks on the output and never fails: a line beyond
// the backlog is counted as dropped.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return w.out.Write(p) // after Close, as an unbuffered writer
	case len(w.pending)+len(p) > w.backlog:
		w.lost++
		w.dropped.Add(1)
	default:
		w.pending = append(w.pending, p...)
	}
	// Under the lock: Close closes wake only after taking it.
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	w.mu.Unlock()
	return len(p), nil
}

// Dropped is the number of lines dropped since the writer was made.
func (w *LogWriter) Dropped() uint64 { return w.dropped.Load() }

// closeWait bounds Close's wait for the last lines to be written: a log
// reader that stopped reading must not hold up a shutdown.
const closeWait = 5 * time.Second

// Close writes out the lines held and stops the writer, waiting at most
// closeWait for the output. Lines written after Close go straight to the
// output.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.wake)
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-time.After(closeWait):
		return errors.New("log writer: the output took more than 5 s; the last lines may be lost")
	}
}

// run writes out what has accumulated each time it is woken, until
// Close; the lines that came meanwhile make the next batch.
func (w *LogWriter) run() {
	defer close(w.done)
	var batch []byte
	for range w.wake {
		batch = w.flush(batch)
	}
	w.flush(batch) // what came before Close
}

// flush writes out the pending lines, reusing batch's memory for the
// next ones, and returns the buffer just written for reuse.
func (w *LogWriter) flush(batch []byte) []byte {
	w.mu.Lock()
	batch, w.pending = w.pending, batch[:0]
	lost := w.lost
	w.lost = 0
	w.mu.Unlock()
	if lost > 0 {
		const msg = "log lines dropped: the log output fell behind"
		if w.json {
			fmt.Fprintf(w.out, "{\"level\":\"WARN\",\"msg\":%q,\"dropped\":%d}\n", msg, lost)
		} else {
			fmt.Fprintf(w.out, "level=WARN msg=%q dropped=%d\n", msg, lost)
		}
	}
	if len(batch) > 0 {
		_, _ = w.out.Write(batch) // nowhere to report a failed log write
	}
	return batch
}
