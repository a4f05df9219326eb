//go:build tools

// Package tools pins grpc-go's xDS interop client and server: the harness builds them with
// `go build -o … google.golang.org/grpc/interop/xds/client` (and `…/server`) from this
// module, so their exact dependency versions live in go.sum.
//
// grpc-go v1.64.1 is the last release whose interop/xds client and server are packages of
// the google.golang.org/grpc module; from v1.65.0 they are a nested module
// (google.golang.org/grpc/interop/xds) that is never tagged, so the module proxy does not
// serve it.
package tools

import (
	_ "google.golang.org/grpc/interop/xds/client"
	_ "google.golang.org/grpc/interop/xds/server"
)
