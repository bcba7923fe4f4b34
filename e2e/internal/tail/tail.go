// Package tail keeps the end of a process's output, for error messages of
// the end-to-end harness (the node and chromium processes).
package tail

import "sync"

// Buffer keeps the last Max bytes written to it. It is safe for
// concurrent use.
type Buffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

// New returns a Buffer that keeps the last max bytes.
func New(max int) *Buffer { return &Buffer{max: max} }

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns what is kept.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
