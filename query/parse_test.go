package query

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseKAbsentIsNotZero: a request without k gets the default; "k": 0 is
// out of range (1..MaxK) like any other bad k, not a request for the default.
func TestParseKAbsentIsNotZero(t *testing.T) {
	const pdq = `"pdq":"0000000000000000000000000000000000000000000000000000000000000000"`
	parse := map[string]func([]byte) (int, error){
		"search": func(b []byte) (int, error) {
			r, err := ParseSearch(b)
			if err != nil {
				return 0, err
			}
			return r.K, nil
		},
		"neardup": func(b []byte) (int, error) {
			r, err := ParseNearDup(b)
			if err != nil {
				return 0, err
			}
			return r.K, nil
		},
	}
	for _, tc := range []struct {
		endpoint, body string
		wantK          int    // when no error
		wantErr        string // else
	}{
		{"search", `{"text":"x"}`, DefaultK, ""},
		{"search", `{"text":"x","k":null}`, DefaultK, ""},
		{"search", `{"text":"x","k":1}`, 1, ""},
		{"search", `{"text":"x","k":1000}`, 1000, ""},
		{"search", `{"text":"x","k":0}`, 0, "k must be between 1 and 1000, got 0"},
		{"search", `{"k":0,"text":"x"}`, 0, "k must be between 1 and 1000, got 0"},
		{"search", `{"text":"x","k":-3}`, 0, "k must be between 1 and 1000, got -3"},
		{"search", `{"text":"x","k":1001}`, 0, "k must be between 1 and 1000, got 1001"},
		{"search", `{"text":"x","K":0}`, 0, "k must be between 1 and 1000, got 0"}, // encoding/json matches keys case-insensitively
		{"neardup", `{` + pdq + `}`, DefaultNearDupK, ""},
		{"neardup", `{` + pdq + `,"k":null}`, DefaultNearDupK, ""},
		{"neardup", `{` + pdq + `,"k":7}`, 7, ""},
		{"neardup", `{` + pdq + `,"k":0}`, 0, "k must be between 1 and 1000, got 0"},
		{"neardup", `{` + pdq + `,"k":1001}`, 0, "k must be between 1 and 1000, got 1001"},
	} {
		k, err := parse[tc.endpoint]([]byte(tc.body))
		if tc.wantErr == "" {
			if err != nil || k != tc.wantK {
				t.Errorf("%s %s: k %d, err %v; want k %d", tc.endpoint, tc.body, k, err, tc.wantK)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeBadRequest || !strings.Contains(e.Message, tc.wantErr) {
			t.Errorf("%s %s: k %d, err %v; want 400 %q", tc.endpoint, tc.body, k, err, tc.wantErr)
		}
	}
}

// TestParseGetLimitAbsentIsNotZero: get's limit is 1..MaxK; absent (or null)
// gives DefaultGetLimit, an explicit 0 is a bad request.
func TestParseGetLimitAbsentIsNotZero(t *testing.T) {
	for _, tc := range []struct {
		body      string
		wantLimit int
		wantErr   string
	}{
		{`{"pks":["a#text"]}`, DefaultGetLimit, ""},
		{`{"pks":["a#text"],"limit":null}`, DefaultGetLimit, ""},
		{`{"pks":["a#text"],"limit":1}`, 1, ""},
		{`{"post_ids":["a"],"limit":1000}`, 1000, ""},
		{`{"pks":["a#text"],"limit":0}`, 0, "limit 0: want 1..1000"},
		{`{"pks":["a#text"],"limit":-1}`, 0, "limit -1: want 1..1000"},
		{`{"pks":["a#text"],"limit":1001}`, 0, "limit 1001: want 1..1000"},
		{`{"limit":5}`, 0, "give pks or post_ids"},
	} {
		r, err := ParseGet([]byte(tc.body))
		if tc.wantErr == "" {
			if err != nil || r.Limit != tc.wantLimit {
				t.Errorf("%s: %+v, %v; want limit %d", tc.body, r, err, tc.wantLimit)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeBadRequest || !strings.Contains(e.Message, tc.wantErr) {
			t.Errorf("%s: %v; want 400 %q", tc.body, err, tc.wantErr)
		}
	}
}

// Error carries its cause for errors.Is/As (errorf's %w); the client sees code
// and message only.
func TestErrorUnwrapsItsCause(t *testing.T) {
	cause := errors.New("index down")
	e := errorf(CodeUnavailable, "index: %w", cause)
	if e.Message != "index: index down" || !errors.Is(e, cause) {
		t.Fatalf("errorf: %+v, want the message and the cause", e)
	}
	if got := AsError(fmt.Errorf("search: %w", e)); got != e {
		t.Fatal("AsError of a wrapped *Error must return it")
	}
	if got := AsError(cause); got.Code != CodeInternal || !errors.Is(got, cause) {
		t.Fatalf("AsError(plain): %+v, want code 500 with the cause", got)
	}
}
