package plugin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/sslrun/sslrun/core/plugin/proto"
)

// The call channel carries the per-step calls (the tensor-carrying ones:
// Forward, Backward, Compute, Observe, Evaluate, Embed) of a plugin
// started by the host, protocol 3 and later; gRPC carries everything
// else, and every call of a plugin without the channel (an older plugin,
// or one reattached in debug mode). The messages are the gRPC ones
// (CallRequest, CallResponse, status codes); only the transport differs:
// two private socketpairs the child inherits at exec, one for requests
// and one for answers, one length-prefixed frame each way per call.
//
// Why not gRPC: a call's request took ~0.5 ms to reach the plugin's
// handler and its answer ~0.5 ms to reach the host (HTTP/2 framing,
// TLS, and goroutine hand-offs through the reader, handler and writer
// goroutines of both runtimes, each waking a thread), 3 ms per W1 SimSiam
// step, while a wake-up across processes costs ~15 us on the same
// machine. Here the goroutine that reads the request runs the call and
// writes the answer itself, each side with one system call per frame in
// the common case. A socketpair has no address that another process
// could connect to, so it needs no TLS.
//
// The sockets are blocking, outside Go's network poller: a goroutine
// waiting for a frame sleeps in read(2) on its own thread, which the
// peer's write wakes directly; through the poller the wake-up went through
// epoll and the scheduler, ~0.1 ms more per frame. A deadline or a
// cancelled context shuts the host's sockets down instead, which ends a
// blocked read or write. Requests and answers travel on separate
// socketpairs because a reader draining a unix socket wakes whoever
// sleeps on the peer's end, and with one socketpair each call woke the
// waiting side once for nothing while the other computed.

// EnvCallFDs names the descriptors of the call channel in a plugin's
// environment, "R,W": the socket to read requests from and the one to
// write answers to. The host sets it when it starts a plugin; a protocol
// 3 plugin then serves its per-step calls there and fails to start if it
// cannot.
const EnvCallFDs = "SSLRUN_PLUGIN_CALL_FDS"

// method identifies a call on the channel.
type method uint32

const (
	methodForward method = iota + 1
	methodBackward
	methodCompute
	methodObserve
	methodEvaluate
	methodEmbed
)

// Frames: a request is a 16-byte header (payload length, method, the
// call's deadline in Unix nanoseconds or 0) and a CallRequest; an answer is
// an 8-byte header (payload length, status code) and a CallResponse when
// the code is OK, the status message otherwise. Integers are little
// endian.
const (
	requestHeader = 16
	answerHeader  = 8
)

// frameBuf is the initial size of a side's frame buffer: one read takes a
// whole frame of the usual size (a few hundred bytes to a few KiB).
const frameBuf = 64 << 10

// readFrame reads one frame whose header is hdr bytes long into buf (one
// read(2) when it fits) and returns the frame, header included. The peer
// sends nothing more until it is answered, so reading ahead cannot take
// bytes of the next frame.
func readFrame(f *os.File, buf []byte, hdr int) ([]byte, error) {
	if cap(buf) < hdr {
		buf = make([]byte, frameBuf)
	}
	buf = buf[:cap(buf)]
	n := 0
	for n < hdr {
		m, err := f.Read(buf[n:])
		if err != nil {
			return nil, err
		}
		n += m
	}
	size := hdr + int(binary.LittleEndian.Uint32(buf))
	if size-hdr > maxMsgSize {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", size-hdr, maxMsgSize)
	}
	if size > len(buf) {
		buf = append(buf[:n], make([]byte, size-n)...)
	}
	if n < size {
		if _, err := io.ReadFull(f, buf[n:size]); err != nil {
			return nil, err
		}
	}
	return buf[:size], nil
}

// writeFrame fills in frame's payload length and writes it.
func writeFrame(f *os.File, frame []byte, hdr int) error {
	binary.LittleEndian.PutUint32(frame, uint32(len(frame)-hdr))
	_, err := f.Write(frame)
	return err
}

// callConn is the host's end of a plugin's call channel. Calls on one
// Client do not overlap; mu only keeps frames whole if they did.
type callConn struct {
	mu       sync.Mutex
	req, ans *os.File
	buf      []byte
	// broken is set once a call failed in transport: the next frame on
	// the stream could belong to the failed call.
	broken error
}

// newCallChannel returns the host's end of a new call channel and the
// child's two sockets (requests, answers) to pass at exec.
func newCallChannel() (*callConn, [2]*os.File, error) {
	var files [4]*os.File
	for i := 0; i < 4; i += 2 {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			closeFiles(files[:i])
			return nil, [2]*os.File{}, fmt.Errorf("call channel: socketpair: %w", err)
		}
		files[i], files[i+1] = os.NewFile(uintptr(fds[0]), "sslrun-calls-host"), os.NewFile(uintptr(fds[1]), "sslrun-calls-plugin")
	}
	return &callConn{req: files[0], ans: files[2], buf: make([]byte, 0, frameBuf)}, [2]*os.File{files[1], files[3]}, nil
}

// shutdown ends a read or write blocked on the channel.
func (c *callConn) shutdown() {
	for _, f := range []*os.File{c.req, c.ans} {
		if sc, err := f.SyscallConn(); err == nil {
			sc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		}
	}
}

// Close shuts the channel down and closes it.
func (c *callConn) Close() error {
	c.shutdown()
	return errors.Join(c.req.Close(), c.ans.Close())
}

// call sends req as method m and waits for the answer. Errors are gRPC
// status errors, as from the gRPC stubs, so that Client.classify treats
// both transports alike: the plugin's own errors keep their codes, a lost
// channel is Unavailable, a missed deadline DeadlineExceeded.
func (c *callConn) call(ctx context.Context, m method, req *pb.CallRequest) (*pb.CallResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, status.Errorf(codes.Unavailable, "call channel: %v", c.broken)
	}
	// Expiry and cancellation end the exchange with end-of-file; the
	// channel is broken afterwards.
	stop := context.AfterFunc(ctx, c.shutdown)
	defer stop()

	var hdr [requestHeader]byte
	binary.LittleEndian.PutUint32(hdr[4:], uint32(m))
	if d, ok := ctx.Deadline(); ok {
		binary.LittleEndian.PutUint64(hdr[8:], uint64(d.UnixNano()))
	}
	frame, err := proto.MarshalOptions{}.MarshalAppend(append(c.buf[:0], hdr[:]...), req)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode request: %v", err)
	}
	c.buf = frame
	if err := writeFrame(c.req, frame, requestHeader); err != nil {
		return nil, c.fail(ctx, "send request", err)
	}
	if frame, err = readFrame(c.ans, c.buf, answerHeader); err != nil {
		return nil, c.fail(ctx, "read answer", err)
	}
	c.buf = frame
	payload := frame[answerHeader:]
	if code := codes.Code(binary.LittleEndian.Uint32(frame[4:])); code != codes.OK {
		return nil, status.Error(code, string(payload))
	}
	resp := &pb.CallResponse{}
	if err := proto.Unmarshal(payload, resp); err != nil {
		return nil, status.Errorf(codes.Internal, "decode answer: %v", err)
	}
	return resp, nil
}

// fail marks the channel broken after a transport error and returns the
// status error for it.
func (c *callConn) fail(ctx context.Context, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) {
		err = errors.New("closed by the plugin")
	}
	c.broken = fmt.Errorf("%s: %w", what, err)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "call channel: %v", c.broken)
	case ctx.Err() != nil:
		return status.Errorf(codes.Canceled, "call channel: %v", c.broken)
	}
	return status.Errorf(codes.Unavailable, "call channel: %v", c.broken)
}

// openCalls opens the plugin's end of the call channel named by
// EnvCallFDs, or returns nils when the host passed none.
func openCalls() (req, ans *os.File, err error) {
	v := os.Getenv(EnvCallFDs)
	if v == "" {
		return nil, nil, nil
	}
	r, w, ok := strings.Cut(v, ",")
	var fds [2]int
	for i, s := range []string{r, w} {
		fd, err := strconv.Atoi(s)
		var st syscall.Stat_t
		if !ok || err != nil || fd < 3 || syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			return nil, nil, fmt.Errorf("call channel: %s=%q: want two inherited sockets R,W", EnvCallFDs, v)
		}
		fds[i] = fd
	}
	for _, fd := range fds {
		syscall.CloseOnExec(fd)
	}
	return os.NewFile(uintptr(fds[0]), "sslrun-calls-requests"), os.NewFile(uintptr(fds[1]), "sslrun-calls-answers"), nil
}

// serveCalls answers calls on the channel until the host closes it. The
// goroutine reading a request runs the call and writes the answer, so a
// call costs no hand-off between goroutines.
func (s *server) serveCalls(req, ans *os.File) {
	defer req.Close()
	defer ans.Close()
	buf := make([]byte, 0, frameBuf)
	for {
		frame, err := readFrame(req, buf, requestHeader)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Error().Err(err).Msg("call channel: read request")
			}
			return
		}
		m := method(binary.LittleEndian.Uint32(frame[4:]))
		deadline := int64(binary.LittleEndian.Uint64(frame[8:]))
		resp, err := s.dispatch(m, deadline, frame[requestHeader:])
		// The request is decoded: its bytes can take the answer.
		var hdr [answerHeader]byte
		out := append(frame[:0], hdr[:]...)
		if err == nil {
			if out, err = (proto.MarshalOptions{}).MarshalAppend(out, resp); err != nil {
				out = out[:answerHeader]
				err = status.Errorf(codes.Internal, "encode answer: %v", err)
			}
		}
		if err != nil {
			st, _ := status.FromError(err)
			binary.LittleEndian.PutUint32(out[4:], uint32(st.Code()))
			out = append(out, st.Message()...)
		}
		buf = out
		if err := writeFrame(ans, out, answerHeader); err != nil {
			s.log.Error().Err(err).Msg("call channel: write answer")
			return
		}
	}
}

// dispatch decodes one request and runs it through the same server
// methods as its gRPC twin.
func (s *server) dispatch(m method, deadline int64, in []byte) (*pb.CallResponse, error) {
	req := &pb.CallRequest{}
	if err := proto.Unmarshal(in, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err)
	}
	ctx := context.Background()
	if deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, deadline))
		defer cancel()
	}
	switch m {
	case methodForward:
		return s.Forward(ctx, req)
	case methodBackward:
		return s.Backward(ctx, req)
	case methodCompute:
		return s.Compute(ctx, req)
	case methodObserve:
		return s.Observe(ctx, req)
	case methodEvaluate:
		return s.Evaluate(ctx, req)
	case methodEmbed:
		return s.Embed(ctx, req)
	}
	return nil, status.Errorf(codes.Unimplemented, "call channel: unknown method %d", m)
}
