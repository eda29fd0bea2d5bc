package main

import (
	"strings"
	"testing"
	"time"
)

func TestEachLineReportsLongLinesAndGoesOn(t *testing.T) {
	in := "one\n\n" + strings.Repeat("x", 50) + "\nthree\r\nlast-without-newline"
	type got struct {
		n    int
		s    string
		long bool
	}
	var lines []got
	err := eachLine(strings.NewReader(in), 20, func(n int, b []byte, long bool) error {
		lines = append(lines, got{n, string(b), long})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []got{{1, "one", false}, {2, "", false}, {3, "", true}, {4, "three", false}, {5, "last-without-newline", false}}
	if len(lines) != len(want) {
		t.Fatalf("lines %+v, want %+v", lines, want)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i+1, lines[i], want[i])
		}
	}
	// A line longer than the reader's buffer is still one (long) line.
	lines = nil
	big := strings.Repeat("y", 600<<10)
	eachLine(strings.NewReader("a\n"+big+"\nb\n"), 1<<10, func(n int, b []byte, long bool) error {
		lines = append(lines, got{n, string(b), long})
		return nil
	})
	if len(lines) != 3 || !lines[1].long || lines[2].s != "b" || lines[2].n != 3 {
		t.Fatalf("with a 600 KiB line: %d lines %v", len(lines), lines[0])
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"", time.Time{}, false},
		{"2026-11-01T10:00:00Z", time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), false},
		{"2026-11-01T10:00:00+02:00", time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC), false},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"-90m", now.Add(-90 * time.Minute), false},
		{"yesterday", time.Time{}, true},
		{"2026-13-01", time.Time{}, true},
	} {
		got, err := parseWhen(tc.in, now)
		if (err != nil) != tc.bad || !got.Equal(tc.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v (bad %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
