package milvus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xmodal/xmodal/domain"
)

// Tests that need no server.

func TestFilterExpr(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		m    domain.Modality
		f    domain.Filter
		want string
	}{
		{"", domain.Filter{}, ""},
		{domain.ModalityText, domain.Filter{}, `modality == "text"`},
		{"", domain.Filter{Authors: []string{"a", `q"uote\back`}}, `author in ["a","q\"uote\\back"]`},
		{"", domain.Filter{Since: at}, "created_at >= 1767323045000000006"},
		{"", domain.Filter{Until: at}, "created_at < 1767323045000000006"},
		{domain.ModalityImage, domain.Filter{Labels: []string{"x", "y"}, Authors: []string{"b"}},
			`modality == "image" && author in ["b"] && array_contains_any(labels, ["x","y"])`},
		{"", domain.Filter{Posts: []string{"p1", `p"2`}, Authors: []string{"b"}}, `author in ["b"] && post_id in ["p1","p\"2"]`},
	}
	for _, tc := range tests {
		if got := FilterExpr(tc.m, tc.f); got != tc.want {
			t.Errorf("FilterExpr(%q, %+v) = %s; want %s", tc.m, tc.f, got, tc.want)
		}
	}
}

func TestTimeEncoding(t *testing.T) {
	for _, tm := range []time.Time{{}, time.Unix(0, 0), time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)} {
		if got := decodeTime(encodeTime(tm)); !got.Equal(tm) || got.IsZero() != tm.IsZero() {
			t.Errorf("time %v round-trips to %v", tm, got)
		}
	}
	// The zero time sorts before every Since, as domain.Filter.Match has it.
	if encodeTime(time.Time{}) >= encodeTime(time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Error("the zero time must encode below every real time")
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{status.Error(codes.Unavailable, "down"), true},
		{status.Error(codes.ResourceExhausted, "slow down"), true},
		{status.Error(codes.DeadlineExceeded, "late"), false},
		{status.Error(codes.InvalidArgument, "bad"), false},
		{merr.WrapErrServiceNotReady("proxy", 1, "starting"), true},
		{merr.WrapErrServiceRateLimit(10, "too fast"), true},
		{merr.WrapErrCollectionNotFound("x"), false},
		{errors.New("plain"), false},
	}
	for _, tc := range tests {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}

func TestRetryIsBoundedAndOnlyOnUnavailable(t *testing.T) {
	o := Options{Retries: 3, RetryBackoff: time.Millisecond, RetryMaxBackoff: 4 * time.Millisecond}.WithDefaults()
	ctx := context.Background()
	var n int
	err := retry(ctx, o, "op", time.Second, func(context.Context) error {
		n++
		if n < 3 {
			return status.Error(codes.Unavailable, "down")
		}
		return nil
	}, nil)
	if err != nil || n != 3 {
		t.Fatalf("two Unavailable then success: err %v after %d calls", err, n)
	}
	n = 0
	err = retry(ctx, o, "op", time.Second, func(context.Context) error { n++; return status.Error(codes.ResourceExhausted, "full") }, nil)
	if err == nil || n != 4 {
		t.Fatalf("always ResourceExhausted: err %v after %d calls, want an error after 4", err, n)
	}
	n = 0
	err = retry(ctx, o, "op", time.Second, func(context.Context) error { n++; return status.Error(codes.InvalidArgument, "bad") }, nil)
	if err == nil || n != 1 {
		t.Fatalf("InvalidArgument: err %v after %d calls, want no retry", err, n)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Address: "127.0.0.1:19530", Dim: 8, ModelVersion: "m@1"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	bad := []Options{
		{Dim: 8, ModelVersion: "m"},
		{Address: "a:1", ModelVersion: "m"},
		{Address: "a:1", Dim: 8},
		{Address: "a:1", Dim: 8, ModelVersion: "m", Collection: "1bad-name"},
		{Address: "a:1", Dim: 8, ModelVersion: "m", CodeBits: 12},
		{Address: "a:1", Dim: 8, ModelVersion: "m", FloatIndex: "DISKANN"},
		{Address: "a:1", Dim: 8, ModelVersion: "m", Consistency: "sometimes"},
		{Address: "a:1", Dim: 8, ModelVersion: "m", Layout: "both"},
		{Address: "a:1", Dim: 8, ModelVersion: "m", NList: 8, NProbe: 16},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted bad options", o)
		}
	}
}

func TestServerSupportsMultiVector(t *testing.T) {
	for v, want := range map[string]bool{"v2.3.5-lite": false, "v2.3.5": false, "2.4.0": true, "v2.5.10": true, "v3.0.0": true, "": false, "dev": false} {
		if got := serverSupportsMultiVector(v); got != want {
			t.Errorf("serverSupportsMultiVector(%q) = %v", v, got)
		}
	}
}

func TestVersionCollection(t *testing.T) {
	a, b := VersionCollection("xmodal", "clip-vit-b32@1"), VersionCollection("xmodal", "clip_vit_b32_1")
	if a == b {
		t.Fatalf("two model versions share collection %s", a)
	}
	if !collectionName.MatchString(strings.ReplaceAll(a, "_", "x")) || !strings.HasPrefix(a, "xmodal_clip_vit_b32_1_") {
		t.Fatalf("VersionCollection = %s", a)
	}
}

func TestUnreachableFailsFast(t *testing.T) {
	start := time.Now()
	_, err := Open(context.Background(), Options{Address: "127.0.0.1:1", Dim: 8, ModelVersion: "m",
		DialTimeout: 300 * time.Millisecond, StartTimeout: 2 * time.Second})
	took := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Open on a closed port: %v; want ErrUnreachable", err)
	}
	if took > 6*time.Second {
		t.Fatalf("Open on a closed port took %v; StartTimeout is 2s", took)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "scripts/milvus.sh") {
		t.Errorf("error does not say what and how: %v", err)
	}
	t.Logf("%v after %v", err, took.Round(time.Millisecond))
}

// The error predicates decide by the status code, so that an error whose text
// happens to contain the words the old text matching looked for ("not", "exist",
// "index not found") is not taken for a missing collection or index.
func TestErrorPredicatesMatchCodesNotText(t *testing.T) {
	// Milvus 2.3 answers with the legacy ErrorCode (deprecated in the proto,
	// still what the servers this package is tested against send).
	//lint:ignore SA1019 the legacy code is what Milvus 2.3 sends
	legacy := func(code commonpb.ErrorCode, reason string) error {
		//lint:ignore SA1019 the legacy code is what Milvus 2.3 sends
		return merr.Error(&commonpb.Status{ErrorCode: code, Reason: reason})
	}
	tests := []struct {
		name        string
		err         error
		index, coll bool
	}{
		{"nil", nil, false, false},
		{"index not found (code 700)", merr.WrapErrIndexNotFound("vec"), true, false},
		{"index not found, wrapped by retry", fmt.Errorf("milvus: describe index c.vec: %w", merr.WrapErrIndexNotFound("vec")), true, false},
		{"legacy IndexNotExist (Milvus 2.3)", legacy(commonpb.ErrorCode_IndexNotExist, "index doesn't exist, collectionID 7"), true, false},
		{"collection not found (code 100)", merr.WrapErrCollectionNotFound("c"), false, true},
		{"legacy CollectionNotExists", legacy(commonpb.ErrorCode_CollectionNotExists, "can't find collection"), false, true},
		{"permission denied says not", merr.WrapErrPrivilegeNotPermitted("user is not authorized"), false, false},
		{"unexpected error quoting the words", legacy(commonpb.ErrorCode_UnexpectedError, "index not found; collection does not exist"), false, false},
		{"plain error quoting the words", errors.New("index doesn't exist: not found"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := indexMissing(tt.err); got != tt.index {
				t.Errorf("indexMissing(%v) = %v, want %v", tt.err, got, tt.index)
			}
			if got := collectionGone(tt.err); got != tt.coll {
				t.Errorf("collectionGone(%v) = %v, want %v", tt.err, got, tt.coll)
			}
		})
	}
}

// An AliasError survives the retry wrapper, so callers match it by type.
func TestAliasErrorMatchedByType(t *testing.T) {
	o := Options{Retries: 0, RetryBackoff: time.Millisecond, CallTimeout: time.Second}
	err := retry(context.Background(), o, "describe alias x", time.Second, func(context.Context) error {
		return &AliasError{Alias: "x", Collection: "x", NotAlias: true, msg: "x is a collection, not an alias"}
	}, nil)
	var ae *AliasError
	if !errors.As(err, &ae) || !ae.NotAlias || ae.Alias != "x" {
		t.Fatalf("errors.As(%v) = %v (%+v); want the AliasError", err, ae != nil, ae)
	}
	if errors.As(fmt.Errorf("milvus: create alias x: %w", merr.WrapErrAliasNotFound("default", "x")), &ae) {
		t.Fatal("a server error about an alias was taken for an AliasError")
	}
}
