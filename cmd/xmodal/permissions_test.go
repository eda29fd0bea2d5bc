package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// principal is a NATS connection of one user of deploy/nats/xmodal.conf,
// with the permission violations the server reported to it.
type principal struct {
	name  string
	nc    *nats.Conn
	mu    sync.Mutex
	viols []error
}

func (p *principal) refused(subject string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.viols {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// TestNATSPermissionsCoverEveryEndpoint (issue #15 item 4): `xmodal run`
// behind deploy/nats/xmodal.conf; every endpoint any of its services
// registers (listed through the services protocol, $SRV.INFO, so that an
// endpoint added later is covered without touching this test) is callable
// by the users that should call it and refused to the others: read
// endpoints by readers (password and nkey) and moderators, endpoints under
// xmodal.v1.admin. by moderators only. An endpoint outside xmodal.v1., or
// one the file does not grant, fails the test.
func TestNATSPermissionsCoverEveryEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an xmodal process")
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	listen := freePort(t)
	c := startChild(t, t.TempDir(), listen,
		"XMODAL_NATS_SERVER_CONFIG="+filepath.Join(testutil.MustRepoRoot(t), "deploy", "nats", "xmodal.conf"),
		"XMODAL_NATS_USER=xmodal", "XMODAL_NATS_PASSWORD=service-secret",
		"XMODAL_SERVICE_PASSWORD=service-secret", "XMODAL_READER_PASSWORD=reader-secret",
		"XMODAL_ADMIN_PASSWORD=admin-secret", "XMODAL_READER_NKEY="+pub)
	dial := func(name string, opts ...nats.Option) *principal {
		t.Helper()
		p := &principal{name: name}
		opts = append(opts, nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			p.mu.Lock()
			p.viols = append(p.viols, err)
			p.mu.Unlock()
		}))
		deadline := time.Now().Add(60 * time.Second)
		for {
			nc, err := nats.Connect("nats://"+listen, opts...)
			if err == nil {
				p.nc = nc
				t.Cleanup(nc.Close)
				return p
			}
			select {
			case err := <-c.done:
				c.done <- err
				t.Fatalf("xmodal exited before serving: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s could not connect: %v", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	inbox := func(user string) nats.Option {
		o, err := client.UserInbox(user)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	reader := dial("reader", nats.UserInfo("reader", "reader-secret"), inbox("reader"))
	nkeyReader := dial("nkey reader", nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix("_INBOX_reader_nkey"))
	moderator := dial("moderator", nats.UserInfo("moderator", "admin-secret"), inbox("moderator"))

	// Every endpoint of every service that answers discovery.
	subjects := discoverEndpoints(t, reader.nc, query.SubjectPrefix+".search", query.AdminPrefix+".delete")
	for _, subj := range subjects {
		if !strings.HasPrefix(subj, query.SubjectPrefix+".") {
			t.Errorf("endpoint %s is outside %s.: deploy/nats/xmodal.conf grants nothing there", subj, query.SubjectPrefix)
			continue
		}
		admin := strings.HasPrefix(subj, query.AdminPrefix+".")
		for _, p := range []*principal{reader, nkeyReader, moderator} {
			may := p == moderator || !admin
			// Wildcard tokens of an endpoint's subject get a concrete one.
			target := strings.ReplaceAll(strings.ReplaceAll(subj, "*", "x"), ">", "x")
			wait := 3 * time.Second
			if !may {
				wait = time.Second // a refused publish gets no reply
			}
			_, err := p.nc.Request(target, []byte("{}"), wait)
			switch {
			case may && err != nil:
				t.Errorf("%s may call %s but got %v (deploy/nats/xmodal.conf does not grant it?)", p.name, subj, err)
			case !may && err == nil:
				t.Errorf("%s called admin endpoint %s and got a reply: deploy/nats/xmodal.conf must refuse it", p.name, subj)
			case !may:
				time.Sleep(50 * time.Millisecond) // the server's -ERR follows the refused publish
				if err := p.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if !p.refused(target) {
					t.Errorf("%s's call of %s failed with %v, but the server reported no permission violation", p.name, subj, err)
				}
			}
		}
	}

	// xmodal's own client commands connect with their user's inbox prefix
	// (nats.inbox_prefix defaults to _INBOX_<nats.user>).
	cli := func(user, password string, args ...string) (string, error) {
		return runXmodal(t, 60*time.Second, []string{"XMODAL_NATS_URL=nats://" + listen, "XMODAL_NATS_USER=" + user, "XMODAL_NATS_PASSWORD=" + password}, args...)
	}
	if out, err := cli("reader", "reader-secret", "query", "--text", "a red square", "-k", "1"); err != nil {
		t.Errorf("xmodal query as the reader: %v\n%s", err, out)
	}
	if out, err := cli("moderator", "admin-secret", "delete", "some-post", "--reason", "test"); err != nil {
		t.Errorf("xmodal delete as the moderator: %v\n%s", err, out)
	}
}

// discoverEndpoints asks every service on nc's server for its endpoints
// ($SRV.INFO, all replies within a second) until the endpoints listed
// include every one of want: a process registers its services one after
// another, so an early answer may come from some of them only.
func discoverEndpoints(t *testing.T, nc *nats.Conn, want ...string) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		reply := nc.NewRespInbox()
		sub, err := nc.SubscribeSync(reply)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest("$SRV.INFO", reply, nil); err != nil {
			t.Fatal(err)
		}
		var subjects []string
		for {
			m, err := sub.NextMsg(time.Second)
			if err != nil {
				break
			}
			var info micro.Info
			if err := json.Unmarshal(m.Data, &info); err != nil {
				t.Fatalf("$SRV.INFO reply %q: %v", m.Data, err)
			}
			for _, e := range info.Endpoints {
				if !slices.Contains(subjects, e.Subject) {
					subjects = append(subjects, e.Subject)
				}
			}
		}
		sub.Unsubscribe()
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return slices.Contains(subjects, w) })
		if len(subjects) > 0 && len(missing) == 0 {
			slices.Sort(subjects)
			return subjects
		}
		if time.Now().After(deadline) {
			t.Fatalf("$SRV.INFO within 60s listed %v; want at least %v", subjects, want)
		}
	}
}
