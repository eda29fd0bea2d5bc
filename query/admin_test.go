package query_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAdminDeleteValidatesIdsAndIsIdempotent (issue #15 item 5): ids are
// checked as ingest checks them (400 naming the id, never a 503 from deep in
// the index); a retried or partly applied delete completes and says which
// posts were already taken down; the audit line names the requester (by its
// per-user reply inbox), the reason, the ids and their digest.
func TestAdminDeleteValidatesIdsAndIsIdempotent(t *testing.T) {
	logs := &lockedBuffer{}
	s := newStackWith(t, query.Config{}, nil, func(d *query.Deps) {
		d.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(s.nc.ConnectedUrl(), nats.CustomInboxPrefix("_INBOX_mod"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	mod := client.New(nc)

	for _, tc := range []struct {
		name, id, want string
	}{
		{"NUL", "a\x00b", `post_ids[0] "a\x00b": character '\x00' not allowed`},
		{"control character", "a\x1bb", `post_ids[0] "a\x1bb": character '\x1b' not allowed`},
		{"newline", "a\nb", `character '\n' not allowed`},
		{"primary key", "t1#text", `character '#' not allowed`},
		{"blank", "", `post_ids[0] "": missing`},
		{"over-long", strings.Repeat("x", domain.MaxPostIDLen+1), "129 bytes, over 128"},
		{"far over the index's key limit", strings.Repeat("k", 100_000), "100000 bytes, over 128"},
	} {
		_, err := mod.Delete(ctx, &query.DeleteRequest{PostIDs: []string{tc.id}})
		if e := query.AsError(err); err == nil || e.Code != query.CodeBadRequest || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v; want 400 naming the id (%q)", tc.name, err, tc.want)
		}
	}
	// A valid id after a bad one: the bad one is named by its position.
	if _, err := mod.Delete(ctx, &query.DeleteRequest{PostIDs: []string{"t0", "bad\x00"}}); !strings.Contains(query.AsError(err).Message, "post_ids[1]") {
		t.Errorf("second id bad: %v", err)
	}
	if s.deny.Denied("t0") {
		t.Fatal("a refused request took a post down")
	}

	// First attempt.
	req := &query.DeleteRequest{PostIDs: []string{"t2", "t1"}, Reason: "ticket 7"}
	res, err := mod.Delete(ctx, req)
	if err != nil || !slices.Equal(res.Deleted, []string{"t1", "t2"}) || len(res.AlreadyDenied) != 0 {
		t.Fatalf("delete: %+v %v", res, err)
	}
	// The same request again: the same answer, the posts named as already down.
	res2, err := mod.Delete(ctx, req)
	if err != nil || !slices.Equal(res2.Deleted, res.Deleted) || !slices.Equal(res2.AlreadyDenied, []string{"t1", "t2"}) {
		t.Fatalf("retried delete: %+v %v", res2, err)
	}
	// A request cut off after recording its takedowns (t3 on the deny-list,
	// still in the index) is completed by its retry.
	if err := s.deny.Deny(ctx, []domain.Takedown{{PostID: "t3", Source: "admin", Reason: "ticket 8"}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.ix.Count(ctx); n[domain.ModalityText] != len(s.texts)-2 {
		t.Fatalf("%d text records before the retry", n[domain.ModalityText])
	}
	res3, err := mod.Delete(ctx, &query.DeleteRequest{PostIDs: []string{"t3", "t4"}, Reason: "ticket 8"})
	if err != nil || res3.Count != 2 || !slices.Equal(res3.AlreadyDenied, []string{"t3"}) {
		t.Fatalf("retry of a cut-off delete: %+v %v", res3, err)
	}
	if n, _ := s.ix.Count(ctx); n[domain.ModalityText] != len(s.texts)-4 {
		t.Errorf("%d text records after the retry, want %d: the retry left a post in the index", n[domain.ModalityText], len(s.texts)-4)
	}

	digest := sha256.Sum256([]byte("t1\nt2\n"))
	var audit []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "audit: takedown") {
			audit = append(audit, line)
		}
	}
	if len(audit) != 3 {
		t.Fatalf("%d audit lines, want 3 (one per applied request, none for refused ones):\n%s", len(audit), strings.Join(audit, "\n"))
	}
	for _, want := range []string{`requester="nats user mod (reply inbox _INBOX_mod)"`, "posts=2", "post_ids=t1,t2",
		"ids_sha256=" + hex.EncodeToString(digest[:]), `reason="ticket 7"`, "already_denied=0"} {
		if !strings.Contains(audit[0], want) {
			t.Errorf("audit line %q lacks %s", audit[0], want)
		}
	}
	if !strings.Contains(audit[1], "already_denied=2") {
		t.Errorf("audit line of the retry %q lacks already_denied=2", audit[1])
	}
}
