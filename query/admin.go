package query

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xmodal/xmodal/domain"
)

// AdminPrefix is the subject prefix of the admin endpoints. Restrict who may
// publish to it with NATS permissions (docs/security.md).
const AdminPrefix = SubjectPrefix + ".admin"

// Limits of a delete request.
const (
	MaxDeleteIDs     = 1000
	MaxDeleteAuthors = 100
	// MaxAuthorPosts caps how many posts one by-author delete takes down.
	MaxAuthorPosts = 100000
	// MaxReason caps the reason of a takedown.
	MaxReason = 1024
)

// DeleteRequest is the body of xmodal.v1.admin.delete: take posts down by id
// and/or every post of some authors. Every named post is deleted and
// deny-listed, so neither a redelivery nor a backfill brings it back (an id not
// indexed yet is deny-listed all the same).
type DeleteRequest struct {
	PostIDs []string `json:"post_ids,omitempty"`
	Authors []string `json:"authors,omitempty"`
	// Reason is recorded with the takedowns (deny-list and audit log).
	Reason string `json:"reason,omitempty"`
}

// DeleteResponse is the reply of xmodal.v1.admin.delete.
//
// The request is idempotent: the takedowns are recorded in the deny-list
// before the index deletes anything, and recording or deleting a post twice
// changes nothing. A request that failed, timed out or was cut off (a
// process killed mid-request) may have taken some posts down and left
// others in the index; sending the same request again completes it and
// answers as the first would have, listing in AlreadyDenied the posts the
// earlier attempt (or any earlier takedown) had already recorded.
type DeleteResponse struct {
	// Deleted lists the post ids taken down (sorted), Count their number.
	Deleted []string `json:"deleted"`
	Count   int      `json:"count"`
	// AlreadyDenied lists the ids of Deleted that were on the deny-list
	// before this request (a retry, or an earlier takedown); they were
	// deleted from the index again all the same.
	AlreadyDenied []string `json:"already_denied,omitempty"`
	// Generation is the deny-list's position after the takedown: every
	// replica that answers a request synced past it no longer returns the posts.
	Generation uint64 `json:"generation"`
}

// AuthorIndex lists an author's posts; the by-author delete needs it.
// sink/embedded implements it.
type AuthorIndex interface {
	PostIDsByAuthor(ctx context.Context, author string, limit int) ([]string, error)
}

// ParseDelete decodes and validates a delete request.
func ParseDelete(data []byte) (*DeleteRequest, error) {
	var r DeleteRequest
	if err := decodeStrict(data, &r); err != nil {
		return nil, err
	}
	if len(r.PostIDs)+len(r.Authors) == 0 {
		return nil, errorf(CodeBadRequest, "give post_ids or authors")
	}
	if err := checkList("post_ids", len(r.PostIDs), MaxDeleteIDs); err != nil {
		return nil, err
	}
	if err := checkList("authors", len(r.Authors), MaxDeleteAuthors); err != nil {
		return nil, err
	}
	if len(r.Reason) > MaxReason {
		return nil, errorf(CodeTooLarge, "reason is %d bytes, at most %d", len(r.Reason), MaxReason)
	}
	// Ids follow ingest's rule (domain.ValidPostID): a NUL, a control
	// character or an over-long id is refused here, naming it, rather than
	// failing deep in an index ("key too large" came back as 503).
	for i, id := range r.PostIDs {
		if why := domain.ValidPostID(id); why != "" {
			return nil, errorf(CodeBadRequest, "post_ids[%d] %s: %s", i, domain.QuoteID(id), why)
		}
	}
	if err := checkItems("authors", r.Authors, domain.MaxAuthorLen); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Service) writer() domain.Writer {
	if s.d.Writer != nil {
		return s.d.Writer
	}
	if w, ok := s.d.Index.(domain.Writer); ok {
		return w
	}
	return nil
}

func (s *Service) authors() AuthorIndex {
	if s.d.Authors != nil {
		return s.d.Authors
	}
	if a, ok := s.d.Index.(AuthorIndex); ok {
		return a
	}
	return nil
}

func (s *Service) delete(ctx context.Context, data []byte) (any, error) {
	r, err := ParseDelete(data)
	if err != nil {
		return nil, err
	}
	w := s.writer()
	if w == nil {
		return nil, errorf(CodeUnavailable, "this server has no index writer: deletes are not enabled")
	}
	ids := slices.Clone(r.PostIDs)
	if len(r.Authors) > 0 {
		ai := s.authors()
		if ai == nil {
			return nil, errorf(CodeBadRequest, "this index cannot list posts by author; delete by post_ids")
		}
		found := 0
		for _, a := range r.Authors {
			got, err := ai.PostIDsByAuthor(ctx, a, MaxAuthorPosts+1)
			if err != nil {
				return nil, indexErr(err)
			}
			found += len(got)
			ids = append(ids, got...)
		}
		if found > MaxAuthorPosts {
			return nil, errorf(CodeTooLarge, "those authors have more than %d posts: delete in parts", MaxAuthorPosts)
		}
		if found == 0 && len(r.PostIDs) == 0 {
			return nil, errorf(CodeNotFound, "no posts by those authors")
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	// Which of them an earlier request (this one, retried) already took down.
	if err := s.syncDeny(ctx); err != nil {
		return nil, err
	}
	var already []string
	for _, id := range ids {
		if s.d.Deny.Denied(id) {
			already = append(already, id)
		}
	}
	// 1. The takedowns go to the replicated deny-list first: once it has them,
	// no replica serves the posts (every reply is filtered through it) and no
	// indexer writes them again.
	now := time.Now().UTC()
	ts := make([]domain.Takedown, len(ids))
	for i, id := range ids {
		ts[i] = domain.Takedown{PostID: id, At: now, Source: "admin", Reason: r.Reason}
	}
	if err := s.d.Deny.Deny(ctx, ts); err != nil {
		return nil, errorf(CodeUnavailable, "the takedown was not recorded (nothing changed; retry): %w", err)
	}
	// 2. Then the index drops them (and keeps its own deny rows).
	done := 0
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		chs := make([]domain.Change, len(chunk))
		for i, id := range chunk {
			chs[i] = domain.Change{PostID: id, Delete: true, Deny: true}
		}
		if _, err := w.Apply(ctx, chs); err != nil {
			return nil, errorf(CodeUnavailable, "all %d posts are taken down (no replica serves them) but %d are still in the index: "+
				"retry the same request, which is safe: %v", len(ids), len(ids)-done, err)
		}
		done += len(chunk)
	}
	// The audit log: one line per takedown request, with who asked, why, and
	// which posts (all ids of a small request; the first 100 of a large one,
	// with the count and a digest of the whole sorted list).
	s.d.Logger.Info("audit: takedown", "requester", requesterOf(ctx), "posts", len(ids), "post_ids", auditIDs(ids),
		"ids_sha256", idsDigest(ids), "already_denied", len(already), "authors", r.Authors, "reason", r.Reason,
		"deny_seq", s.d.Deny.Seq())
	return &DeleteResponse{Deleted: ids, Count: len(ids), AlreadyDenied: already, Generation: s.d.Deny.Seq()}, nil
}

// auditIDs lists the ids of a takedown for the audit line (the first 100 of
// a large one, and how many more).
func auditIDs(ids []string) string {
	if len(ids) <= 100 {
		return strings.Join(ids, ",")
	}
	return strings.Join(ids[:100], ",") + fmt.Sprintf(",... (%d more)", len(ids)-100)
}

// idsDigest is the SHA-256 of the sorted ids, one per line: what an audit
// line of a large takedown names them by.
func idsDigest(ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// startAdmin registers the admin endpoints under AdminPrefix.
func (s *Service) startAdmin(svc *microService) error {
	s.register("admin.delete", s.delete)
	if err := svc.add("admin-delete", AdminPrefix+".delete", s.handler("admin.delete", s.delete)); err != nil {
		return err
	}
	s.register("admin.dedup", s.dedup)
	return svc.add("admin-dedup", AdminPrefix+".dedup", s.handler("admin.dedup", s.dedup))
}
