package main

import (
	"context"
	"errors"
)

type idleResult struct {
	Conns      int
	BeforeKiB  int64
	AfterKiB   int64
	PerConnKiB float64
}

func runIdle(ctx context.Context, cfg suiteConfig, dir string, ep *endpointProc, res *results, logf func(string, ...any)) error {
	return errors.New("not yet")
}
