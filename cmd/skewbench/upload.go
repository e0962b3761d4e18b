package main

import (
	"context"
	"errors"
)

// uploadResult is one upload mode through the proxy against direct.
type uploadResult struct {
	Mode       string
	Client     string
	ProxyMiBs  float64
	DirectMiBs float64
	PeakRSSKiB int64
}

func runUploads(ctx context.Context, cfg suiteConfig, dir string, res *results, logf func(string, ...any)) error {
	return errors.New("not yet")
}
