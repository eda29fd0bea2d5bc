package client

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// Replies to a NATS request go to the requester's inbox subject. With the
// default prefix "_INBOX." every client needs the right to subscribe to
// "_INBOX.>", and so can read everyone's replies: a moderator's delete
// confirmation, another client's records, the posts an indexer pulls from
// JetStream. deploy/nats/xmodal.conf therefore gives each user its own
// prefix, "_INBOX_<user>", and lets the user subscribe to nothing else; a
// client connects with that prefix (UserInbox, or nats.CustomInboxPrefix)
// and its replies, its JetStream API calls and its pull consumers' messages
// all arrive there.

// InboxPrefix is the reply-subject prefix of a NATS user under the
// permissions of deploy/nats/xmodal.conf: "_INBOX_" + user. A user name
// that cannot be one subject token (empty, or holding ".", "*", ">" or
// white space) is refused: give such a user an explicit prefix.
func InboxPrefix(user string) (string, error) {
	if user == "" {
		return "", fmt.Errorf("inbox prefix: no user name")
	}
	for _, c := range user {
		switch {
		case c == '.', c == '*', c == '>', c <= ' ', c == 0x7f:
			return "", fmt.Errorf("inbox prefix: user name %q is not one subject token (it holds %q): set the prefix explicitly", user, c)
		}
	}
	return "_INBOX_" + user, nil
}

// UserInbox is the connection option that sets user's inbox prefix
// (InboxPrefix). A connection without it sends its requests from "_INBOX."
// and, under deploy/nats's permissions, gets no replies.
func UserInbox(user string) (nats.Option, error) {
	p, err := InboxPrefix(user)
	if err != nil {
		return nil, err
	}
	return nats.CustomInboxPrefix(p), nil
}
