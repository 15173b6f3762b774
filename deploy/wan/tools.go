//go:build tools

// Package wan only pins the Toxiproxy commands this project builds
// (deploy/wan/toxiproxy.py); it is never compiled.
package wan

import (
	_ "github.com/Shopify/toxiproxy/v2/cmd/cli"
	_ "github.com/Shopify/toxiproxy/v2/cmd/server"
)
