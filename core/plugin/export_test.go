package plugin

// ServeProtocolForTest makes Serve speak protocol v, to play a plugin built
// with an older version of this package.
func ServeProtocolForTest(v int) { serveProtocol = v }
