package plugin

import "github.com/sslrun/sslrun/core/plugin/shm"

// ServeProtocolForTest makes Serve speak protocol v, to play a plugin built
// with an older version of this package.
func ServeProtocolForTest(v int) { serveProtocol = v }

// ArenaUsedForTest reports the bytes of the host arena handed out since its
// last Reset: what staging (copying) inputs cost.
func (h *Host) ArenaUsedForTest() int { return h.arena.Used() }

// BreakForwardingForTest makes every forwarded segment unmappable by the
// callee (a descriptor number no process has).
func (h *Host) BreakForwardingForTest() {
	h.editForward = func(d *shm.Desc) { d.OwnerFD = 1 << 20 }
}

// CallChannelForTest reports whether the client sends its per-step calls
// over the call channel rather than gRPC.
func (c *Client) CallChannelForTest() bool { return c.calls != nil }
