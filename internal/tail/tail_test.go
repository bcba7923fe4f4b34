package tail

import "testing"

func TestBufferKeepsTheEnd(t *testing.T) {
	b := New(5)
	b.Write([]byte("abc"))
	b.Write([]byte("defg"))
	if got := b.String(); got != "cdefg" {
		t.Fatalf("String() = %q, want cdefg", got)
	}
}
