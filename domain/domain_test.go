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

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		st      PostState
		ch      Change
		want    Outcome
		next    PostState
		newDeny bool
	}{
		{"new post", PostState{}, Change{Seq: 5}, Applied, PostState{Exists: true, Seq: 5}, false},
		{"newer version", PostState{Exists: true, Seq: 5}, Change{Seq: 7}, Applied, PostState{Exists: true, Seq: 7}, false},
		{"same version re-applies", PostState{Exists: true, Seq: 7}, Change{Seq: 7}, Applied, PostState{Exists: true, Seq: 7}, false},
		{"older version is stale", PostState{Exists: true, Seq: 7}, Change{Seq: 6}, Stale, PostState{Exists: true, Seq: 7}, false},
		{"seq 0 always applies", PostState{Exists: true, Seq: 7}, Change{}, Applied, PostState{Exists: true}, false},
		{"unordered index accepts any", PostState{Exists: true}, Change{Seq: 3}, Applied, PostState{Exists: true, Seq: 3}, false},
		{"denied is never indexed", PostState{Denied: true}, Change{Seq: 9}, Denied, PostState{Denied: true}, false},
		{"delete", PostState{Exists: true, Seq: 7}, Change{Delete: true}, Deleted, PostState{}, false},
		{"delete and deny", PostState{Exists: true, Seq: 7}, Change{Delete: true, Deny: true}, Deleted, PostState{Denied: true}, true},
		{"deny twice", PostState{Denied: true}, Change{Delete: true, Deny: true}, Deleted, PostState{Denied: true}, false},
		{"delete keeps an older deny", PostState{Denied: true}, Change{Delete: true}, Deleted, PostState{Denied: true}, false},
	}
	for _, tc := range tests {
		out, next, nd := Decide(tc.st, &tc.ch)
		if out != tc.want || next != tc.next || nd != tc.newDeny {
			t.Errorf("%s: Decide = %s, %+v, %v; want %s, %+v, %v", tc.name, out, next, nd, tc.want, tc.next, tc.newDeny)
		}
	}
}

func TestFilterMatchedBanks(t *testing.T) {
	matched := &Record{Matches: []RecordMatch{{Bank: "spam", EntryID: "text-1"}, {Bank: "memes", EntryID: "pdq-2"}}}
	clean := &Record{}
	for _, c := range []struct {
		banks          []string
		matched, clean bool
	}{
		{nil, true, true},
		{[]string{"spam"}, true, false},
		{[]string{"other", "memes"}, true, false},
		{[]string{"other"}, false, false},
	} {
		f := Filter{MatchedBanks: c.banks}
		if f.Empty() != (len(c.banks) == 0) {
			t.Errorf("%v: Empty() = %v", c.banks, f.Empty())
		}
		if got := f.Match(matched); got != c.matched {
			t.Errorf("%v: the matched record passes: %v, want %v", c.banks, got, c.matched)
		}
		if got := f.Match(clean); got != c.clean {
			t.Errorf("%v: a record without matches passes: %v, want %v", c.banks, got, c.clean)
		}
	}
}
