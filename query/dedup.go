package query

import (
	"context"
	"errors"
	"time"

	"github.com/xmodal/xmodal/internal/dedup"
)

// DedupRunner runs the batch near-duplicate job in the serving process
// (*dedup.Manager implements it).
type DedupRunner interface {
	Start(dedup.Request) (dedup.Status, error)
	Status(id string) (dedup.Status, error)
	Cancel(id string) error
}

// DedupRequest is the body of xmodal.v1.admin.dedup. Action start (default)
// starts a job (or, with resume, continues one after a crash from its
// checkpoint); status and cancel name the job by id. Every action answers
// the job's status (dedup.Status).
type DedupRequest struct {
	Action string `json:"action,omitempty"` // start, status or cancel
	ID     string `json:"id,omitempty"`
	// Threshold in PDQ bits (default DefaultNearDupDistance).
	Threshold   *int      `json:"threshold,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	Until       time.Time `json:"until,omitzero"`
	MaxMemoryMB int       `json:"max_memory_mb,omitempty"`
	MinSize     int       `json:"min_size,omitempty"`
	Resume      string    `json:"resume,omitempty"`
	// Rebuild the incremental clusters when a whole-index job at their
	// threshold finds drift.
	Rebuild bool `json:"rebuild,omitempty"`
}

func (s *Service) dedup(ctx context.Context, data []byte) (any, error) {
	var r DedupRequest
	if err := decodeStrict(data, &r); err != nil {
		return nil, err
	}
	if s.d.Dedup == nil {
		return nil, errorf(CodeNotImplemented, "this server runs no dedup jobs (the embedded index's serving process does; on Milvus run xmodal dedup --milvus; docs/clusters.md)")
	}
	var st dedup.Status
	var err error
	switch r.Action {
	case "", "start":
		thr := DefaultNearDupDistance
		if r.Threshold != nil {
			thr = *r.Threshold
		}
		st, err = s.d.Dedup.Start(dedup.Request{Threshold: thr, Since: r.Since, Until: r.Until, MaxMemoryMB: r.MaxMemoryMB, MinSize: r.MinSize, Resume: r.Resume, Rebuild: r.Rebuild})
		if err == nil {
			s.d.Logger.Info("audit: dedup job started", "id", st.ID, "threshold", st.Request.Threshold, "resume", r.Resume)
		}
	case "status":
		st, err = s.d.Dedup.Status(r.ID)
	case "cancel":
		if err = s.d.Dedup.Cancel(r.ID); err == nil {
			st, err = s.d.Dedup.Status(r.ID)
		}
	default:
		return nil, errorf(CodeBadRequest, "action %q is unknown (start, status, cancel)", r.Action)
	}
	switch {
	case err == nil:
		return &st, nil
	case errors.Is(err, dedup.ErrBusy):
		return nil, errorf(CodeConflict, "%v", err)
	case errors.Is(err, dedup.ErrUnknownJob):
		return nil, errorf(CodeNotFound, "%v", err)
	case errors.Is(err, dedup.ErrBadRequest):
		return nil, errorf(CodeBadRequest, "%v", err)
	}
	return nil, errorf(CodeInternal, "%v", err)
}
