package query

import (
	"context"
	"strings"
)

// requesterKey carries who sent a request, for the audit log.
type requesterKey struct{}

// WithRequester returns ctx naming the requester of the request it serves,
// as the audit log should print it (the HTTP gateway: "http admin token from
// <address>").
func WithRequester(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, requesterKey{}, who)
}

// requesterOf is the requester named in ctx, or "unknown".
func requesterOf(ctx context.Context) string {
	if who, ok := ctx.Value(requesterKey{}).(string); ok && who != "" {
		return who
	}
	return "unknown"
}

// natsRequester names the NATS user of a request by its reply subject. NATS
// does not tell a responder who sent a message, but under the permissions of
// deploy/nats/xmodal.conf each user may subscribe to its own inbox prefix
// only, _INBOX_<user>, so a reply to "_INBOX_moderator.…" reaches the
// moderator and nobody else: the name is that of the user the reply (the
// confirmation) goes to. A reply subject of the default prefix names nobody.
func natsRequester(reply string) string {
	if reply == "" {
		return "unknown (no reply subject)"
	}
	prefix, _, _ := strings.Cut(reply, ".")
	if user, ok := strings.CutPrefix(prefix, "_INBOX_"); ok && user != "" {
		return "nats user " + user + " (reply inbox " + prefix + ")"
	}
	return "unknown (reply inbox " + prefix + ", not a per-user prefix)"
}
