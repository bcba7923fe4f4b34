package admin

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// blockingWriter holds every write until released, as a slow disk or a
// full pipe would.
type blockingWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	release chan struct{}
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *blockingWriter) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogWriterKeepsOrderAndLines: every line comes out, in order, once
// Close returns; writers never wait for the output.
func TestLogWriterKeepsOrderAndLines(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	w := NewLogWriter(LogWriterConfig{Out: out})
	for i := range 1000 {
		fmt.Fprintf(w, "line %d\n", i) // would block here if Write waited
	}
	close(out.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines out, want 1000", len(lines))
	}
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
	if w.Dropped() != 0 {
		t.Errorf("%d lines dropped with room to spare", w.Dropped())
	}
	fmt.Fprintln(w, "after close")
	if !strings.HasSuffix(out.String(), "after close\n") {
		t.Error("a line after Close was lost")
	}
}

// TestLogWriterCountsWhatItDrops: past the backlog lines are dropped,
// counted, and the output says how many.
func TestLogWriterCountsWhatItDrops(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	w := NewLogWriter(LogWriterConfig{Out: out, Backlog: 100})
	line := strings.Repeat("x", 19) + "\n" // 20 bytes: five fit
	for range 12 {
		_, _ = w.Write([]byte(line))
	}
	// At most two backlogs are held while the output is stuck: the batch
	// being written, and the one waiting; so at least 2 of 12 are dropped.
	dropped := w.Dropped()
	if dropped < 2 {
		t.Errorf("%d dropped of 12 lines into a 100-byte backlog, want at least 2", dropped)
	}
	close(out.release)
	_ = w.Close()
	noted := 0
	for _, m := range regexp.MustCompile(`dropped=(\d+)`).FindAllStringSubmatch(out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		noted += n
	}
	if uint64(noted) != dropped {
		t.Errorf("the output notes %d dropped lines, the writer counted %d:\n%s", noted, dropped, out.String())
	}
	if kept := strings.Count(out.String(), line); kept != 12-int(dropped) {
		t.Errorf("%d lines out, want %d", kept, 12-int(dropped))
	}
}

// TestLogDroppedMetric: the dropped lines are a metric.
func TestLogDroppedMetric(t *testing.T) {
	r := NewRecorder(RecorderConfig{LogDropped: func() uint64 { return 3 }})
	srv := httptest.NewServer(r.Handler(HealthFuncs{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "ioproxy_log_lines_dropped_total 3") {
		t.Errorf("metrics lack ioproxy_log_lines_dropped_total 3")
	}
}

// TestLogWriterCloseWhileWriting: writers racing Close neither panic nor
// lose a line.
func TestLogWriterCloseWhileWriting(t *testing.T) {
	var out blockingWriter
	out.release = make(chan struct{})
	close(out.release)
	w := NewLogWriter(LogWriterConfig{Out: &out})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				_, _ = w.Write([]byte("x\n"))
			}
		})
	}
	_ = w.Close()
	wg.Wait()
	if n := strings.Count(out.String(), "x\n"); n != 1600 {
		t.Errorf("%d lines out of 1600", n)
	}
}
