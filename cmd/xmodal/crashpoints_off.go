//go:build !crashtest

package main

import (
	"log/slog"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/sink/matching"
	"github.com/xmodal/xmodal/workers"
)

// crashTestBuild says this binary has crash points.
const crashTestBuild = false

// crashPoints does nothing in a normal build: crash points exist only in
// binaries built with -tags crashtest (crashpoints.go).
func crashPoints(*workers.Deps, *slog.Logger) {}

// crashEvents returns p unchanged in a normal build.
func crashEvents(p matching.Publisher, _ *slog.Logger) matching.Publisher { return p }

// crashPoint does nothing in a normal build.
func crashPoint(*slog.Logger) func(string) { return func(string) {} }

// crashSweeps returns nd: no crash points in a normal build.
func crashSweeps(nd domain.NearDupSearcher, _ *slog.Logger) domain.NearDupSearcher { return nd }
