package query

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// jsonList is a JSON array of n distinct strings.
func jsonList(prefix string, n int) string {
	xs := make([]string, n)
	for i := range xs {
		xs[i] = fmt.Sprintf("%q", fmt.Sprint(prefix, i))
	}
	return "[" + strings.Join(xs, ",") + "]"
}

func jsonNumbers(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("0.5,", n), ",") + "]"
}

// TestListCaps (issue #15 item 2): every list a request carries has a cap;
// a list at its cap is accepted and one item more is refused with 413 whose
// message names the field and the cap. Items no post could carry are 400
// naming the item.
func TestListCaps(t *testing.T) {
	const pdq = `"pdq":"0000000000000000000000000000000000000000000000000000000000000000"`
	parse := map[string]func([]byte) error{
		"search":       func(b []byte) error { _, err := ParseSearch(b); return err },
		"neardup":      func(b []byte) error { _, err := ParseNearDup(b); return err },
		"get":          func(b []byte) error { _, err := ParseGet(b); return err },
		"admin.delete": func(b []byte) error { _, err := ParseDelete(b); return err },
	}
	for _, tc := range []struct {
		endpoint, body string
		code           int    // 0: accepted
		want           string // in the message
	}{
		{"search", `{"text":"x","filter":{"authors":` + jsonList("a", MaxFilterAuthors) + `}}`, 0, ""},
		{"search", `{"text":"x","filter":{"authors":` + jsonList("a", MaxFilterAuthors+1) + `}}`, 413, "filter.authors has 101 items, at most 100"},
		{"search", `{"text":"x","filter":{"authors":` + jsonList("a", 100000) + `}}`, 413, "filter.authors has 100000 items, at most 100"},
		{"search", `{"text":"x","filter":{"labels":` + jsonList("l", MaxFilterLabels) + `}}`, 0, ""},
		{"search", `{"text":"x","filter":{"labels":` + jsonList("l", MaxFilterLabels+1) + `}}`, 413, "filter.labels has 101 items, at most 100"},
		{"search", `{"text":"x","filter":{"authors":["ok",""]}}`, 400, "filter.authors[1] is blank"},
		{"search", `{"text":"x","filter":{"authors":["` + strings.Repeat("a", 257) + `"]}}`, 400, "filter.authors[0] is 257 bytes, over 256"},
		{"search", `{"text":"x","filter":{"labels":["` + strings.Repeat("l", 129) + `"]}}`, 400, "filter.labels[0] is 129 bytes, over 128"},
		{"search", `{"text":"x","filter":{"labels":["a\u0000b"]}}`, 400, "filter.labels[0] contains control characters"},
		{"search", `{"vector":` + jsonNumbers(MaxVectorDim+1) + `}`, 413, "vector has 4097 items, at most 4096"},
		{"search", `{"text":"x","filter":{"matched_banks":` + jsonList("b", MaxFilterBanks) + `}}`, 0, ""},
		{"search", `{"text":"x","filter":{"matched_banks":` + jsonList("b", MaxFilterBanks+1) + `}}`, 413, "filter.matched_banks has 101 items, at most 100"},
		{"search", `{"text":"x","filter":{"matched_banks":["spam",""]}}`, 400, "filter.matched_banks[1] is blank"},
		{"neardup", `{` + pdq + `,"filter":{"matched_banks":["` + strings.Repeat("b", 65) + `"]}}`, 400, "filter.matched_banks[0] is 65 bytes, over 64"},
		{"neardup", `{` + pdq + `,"filter":{"authors":` + jsonList("a", MaxFilterAuthors) + `}}`, 0, ""},
		{"neardup", `{` + pdq + `,"filter":{"authors":` + jsonList("a", MaxFilterAuthors+1) + `}}`, 413, "filter.authors has 101 items, at most 100"},
		{"neardup", `{` + pdq + `,"filter":{"labels":` + jsonList("l", MaxFilterLabels+1) + `}}`, 413, "filter.labels has 101 items, at most 100"},
		{"get", `{"pks":` + jsonList("p", MaxK) + `}`, 0, ""},
		{"get", `{"pks":` + jsonList("p", MaxK+1) + `}`, 413, "name 1001 records (a post id counts 3), at most 1000"},
		{"get", `{"post_ids":` + jsonList("p", MaxK/3+1) + `}`, 413, "name 1002 records (a post id counts 3), at most 1000"},
		{"admin.delete", `{"post_ids":` + jsonList("p", MaxDeleteIDs) + `}`, 0, ""},
		{"admin.delete", `{"post_ids":` + jsonList("p", MaxDeleteIDs+1) + `}`, 413, "post_ids has 1001 items, at most 1000"},
		{"admin.delete", `{"authors":` + jsonList("a", MaxDeleteAuthors+1) + `}`, 413, "authors has 101 items, at most 100"},
	} {
		err := parse[tc.endpoint]([]byte(tc.body))
		name := tc.endpoint + " " + tc.body
		if len(name) > 120 {
			name = name[:120] + "…"
		}
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%s: %v, want accepted", name, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v, want %d %q", name, err, tc.code, tc.want)
		}
	}
}
