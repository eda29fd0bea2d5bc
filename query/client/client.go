// Package client is a typed Go client of the xmodal query service over NATS.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/xmodal/xmodal/query"
)

// Client sends requests to the query service.
type Client struct {
	nc     *nats.Conn
	prefix string
	// Attempts is how many times a read request (search, get, neardup,
	// stats) is sent when it got no reply (no replica listening, or none
	// answered within the attempt's share of the deadline) or a 503 (a
	// dependency of the replica out of reach): 2 by default. Replicas share a NATS queue group, so a retry reaches another
	// replica when one was killed with the request in flight. Each attempt
	// gets an equal share of the context's deadline. Admin requests are sent
	// once (retry them yourself: they are idempotent).
	Attempts int
}

// New returns a client on nc for the default subject prefix.
func New(nc *nats.Conn) *Client { return &Client{nc: nc, prefix: query.SubjectPrefix, Attempts: 2} }

// Search runs a search request.
func (c *Client) Search(ctx context.Context, r *query.SearchRequest) (*query.SearchResponse, error) {
	var out query.SearchResponse
	return &out, c.call(ctx, "search", r, &out)
}

// Get fetches records by primary key or post id.
func (c *Client) Get(ctx context.Context, r *query.GetRequest) (*query.GetResponse, error) {
	var out query.GetResponse
	return &out, c.call(ctx, "get", r, &out)
}

// NearDup finds near-duplicate images by image bytes, image URL or PDQ hex.
func (c *Client) NearDup(ctx context.Context, r *query.NearDupRequest) (*query.NearDupResponse, error) {
	var out query.NearDupResponse
	return &out, c.call(ctx, "neardup", r, &out)
}

// Cluster returns a page of a near-duplicate cluster's members (xmodal.v1.cluster).
func (c *Client) Cluster(ctx context.Context, r *query.ClusterRequest) (*query.ClusterResponse, error) {
	var out query.ClusterResponse
	return &out, c.call(ctx, "cluster", r, &out)
}

// Trending returns the clusters that grew most in a window (xmodal.v1.trending).
func (c *Client) Trending(ctx context.Context, r *query.TrendingRequest) (*query.TrendingResponse, error) {
	var out query.TrendingResponse
	return &out, c.call(ctx, "trending", r, &out)
}

// Stats returns record counts and the model.
func (c *Client) Stats(ctx context.Context) (*query.StatsResponse, error) {
	var out query.StatsResponse
	return &out, c.call(ctx, "stats", struct{}{}, &out)
}

// Delete takes posts down by id or by author (xmodal.v1.admin.delete: the
// connection's NATS user needs publish permission on xmodal.v1.admin.>).
func (c *Client) Delete(ctx context.Context, r *query.DeleteRequest) (*query.DeleteResponse, error) {
	var out query.DeleteResponse
	return &out, c.call(ctx, "admin.delete", r, &out)
}

// Call sends req (marshalled to JSON) to an endpoint and decodes the reply into
// out: for endpoints this client has no typed method for.
func (c *Client) Call(ctx context.Context, endpoint string, req, out any) error {
	return c.call(ctx, endpoint, req, out)
}

// Raw sends body as is to an endpoint and decodes the reply into out; for tools
// and tests that need to send malformed requests.
func (c *Client) Raw(ctx context.Context, endpoint string, body []byte, out any) error {
	_, err := c.raw(ctx, endpoint, body, out)
	return err
}

// raw is Raw that also says whether the request got no reply at all (no
// replica listening, or none answered in time): the case a retry may fix.
func (c *Client) raw(ctx context.Context, endpoint string, body []byte, out any) (bool, error) {
	msg, err := c.nc.RequestWithContext(ctx, c.prefix+"."+endpoint, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return true, &query.Error{Code: query.CodeUnavailable, Message: "no xmodal query service is listening on " + c.prefix + "." + endpoint}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			msg := err.Error()
			if le := c.nc.LastError(); errors.Is(le, nats.ErrPermissionViolation) {
				// The server refused the request's publish or its reply
				// inbox's subscription: say so, not just "timeout".
				msg += fmt.Sprintf(" (the connection's last error: %v; under deploy/nats's permissions a client connects with its user's inbox prefix, client.UserInbox)", le)
			}
			return true, &query.Error{Code: query.CodeTimeout, Message: msg}
		}
		return false, err
	}
	// micro reports errors in headers with an empty body.
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		return n == query.CodeUnavailable, &query.Error{Code: n, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	if out == nil {
		return false, nil
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return false, fmt.Errorf("decode %s reply: %w", endpoint, err)
	}
	return false, nil
}

func (c *Client) call(ctx context.Context, endpoint string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	attempts := c.Attempts
	if strings.HasPrefix(endpoint, "admin.") || attempts < 1 {
		attempts = 1
	}
	for i := 1; ; i++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && i < attempts {
			actx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(attempts-i+1))
		}
		var retryable bool
		retryable, err = c.raw(actx, endpoint, body, out)
		cancel()
		var qe *query.Error
		if strings.HasPrefix(endpoint, "admin.") && retryable && errors.As(err, &qe) {
			// No reply, or the service cut off: the request may have been
			// applied in part. Admin requests are idempotent.
			qe.Message += " (the request may have been applied in part: sending the same request again is safe and completes it)"
		}
		if err == nil || !retryable || i >= attempts || ctx.Err() != nil {
			return err
		}
	}
}
