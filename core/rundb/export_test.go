package rundb

import (
	"context"
	"database/sql"
)

// SetMaxVariables lowers the bind-variable limit the writer chunks by, so
// tests can exercise chunking with small batches.
func SetMaxVariables(db *DB, n int) { db.maxVars = n }

// SetConnHook installs a hook run on each new writer connection.
func SetConnHook(db *DB, f func(context.Context, *sql.Conn) error) { db.connHook = f }
