package domain

import "testing"

func TestPrimaryKeyRoundTrip(t *testing.T) {
	tests := []struct {
		id string
		m  Modality
	}{
		{"p1", ModalityText},
		{"a:b.c-d_e", ModalityImage},
		{"x", ModalityFused},
	}
	for _, tc := range tests {
		pk := PrimaryKey(tc.id, tc.m)
		id, m, ok := SplitPrimaryKey(pk)
		if !ok || id != tc.id || m != tc.m {
			t.Errorf("SplitPrimaryKey(%q) = %q, %q, %v; want %q, %q", pk, id, m, ok, tc.id, tc.m)
		}
	}
	for _, bad := range []string{"", "#text", "p1", "p1#video"} {
		if _, _, ok := SplitPrimaryKey(bad); ok {
			t.Errorf("SplitPrimaryKey(%q) accepted a malformed key", bad)
		}
	}
}

func TestTruncateText(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"}, // é is two bytes: do not split it
		{"日本", 4, "日"},
		{"", 0, ""},
	}
	for _, tc := range tests {
		if got := TruncateText(tc.in, tc.n); got != tc.want {
			t.Errorf("TruncateText(%q, %d) = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestParseModality(t *testing.T) {
	for _, s := range []string{"image", " TEXT ", "fused"} {
		if _, err := ParseModality(s); err != nil {
			t.Errorf("ParseModality(%q): %v", s, err)
		}
	}
	if _, err := ParseModality("video"); err == nil {
		t.Error("ParseModality(video) accepted an unknown modality")
	}
}
