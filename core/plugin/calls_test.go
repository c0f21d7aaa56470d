package plugin

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func socketpair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestFrames sends frames of several sizes, one larger than the reader's
// buffer, and checks that each arrives whole and alone.
func TestFrames(t *testing.T) {
	w, r := socketpair(t)
	buf := make([]byte, 0, 64)
	for _, n := range []int{0, 1, 56, 57, 1000, 300 << 10} {
		frame := make([]byte, answerHeader+n)
		binary.LittleEndian.PutUint32(frame[4:], uint32(n%7))
		for i := range n {
			frame[answerHeader+i] = byte(i * 31)
		}
		done := make(chan error, 1)
		go func() { done <- writeFrame(w, frame, answerHeader) }()
		got, err := readFrame(r, buf, answerHeader)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%d bytes: write: %v", n, err)
		}
		if !bytes.Equal(got, frame) || binary.LittleEndian.Uint32(got) != uint32(n) {
			t.Fatalf("%d bytes: frame differs", n)
		}
		buf = got
	}
}

// TestFrameErrors checks that a frame cut short and a frame claiming more
// than the size limit are errors, not hangs or huge allocations.
func TestFrameErrors(t *testing.T) {
	w, r := socketpair(t)
	var hdr [answerHeader]byte
	binary.LittleEndian.PutUint32(hdr[:], maxMsgSize+1)
	if _, err := w.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(r, nil, answerHeader); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized frame: err = %v", err)
	}

	w, r = socketpair(t)
	binary.LittleEndian.PutUint32(hdr[:], 100)
	if _, err := w.Write(append(hdr[:], "only part"...)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := readFrame(r, make([]byte, 0, 16), answerHeader); err != io.ErrUnexpectedEOF {
		t.Fatalf("frame cut short: err = %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// TestOpenCallsRejects checks that a plugin refuses a call channel it
// cannot use instead of leaving the host waiting on it.
func TestOpenCallsRejects(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notasocket")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, v := range []string{"7", "x,y", "1,2", "999,999", strconv.Itoa(int(f.Fd())) + "," + strconv.Itoa(int(f.Fd()))} {
		t.Setenv(EnvCallFDs, v)
		if req, _, err := openCalls(); err == nil || req != nil {
			t.Errorf("%s=%q: err = %v, want an error", EnvCallFDs, v, err)
		}
	}
	t.Setenv(EnvCallFDs, "")
	if req, ans, err := openCalls(); err != nil || req != nil || ans != nil {
		t.Errorf("no channel: %v, %v, %v", req, ans, err)
	}
}
