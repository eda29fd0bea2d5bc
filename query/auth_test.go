package query_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/xmodal/xmodal/internal/bankstore"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/redisserver"
	"github.com/xmodal/xmodal/internal/replstate"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

type certs struct{ ca, cert, key string }

// writeCerts makes a CA and a server certificate for 127.0.0.1/localhost.
func writeCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xmodal test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	c := certs{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	for path, blk := range map[string]*pem.Block{c.ca: {Type: "CERTIFICATE", Bytes: caDER},
		c.cert: {Type: "CERTIFICATE", Bytes: der}, c.key: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// secureStack starts the query stack behind an embedded NATS server configured
// by one of the example files in deploy/nats, with secrets in the environment.
type secureStack struct {
	*stack
	url     string
	readerK nkeys.KeyPair
	certs   certs
}

func newSecureStack(t *testing.T, confFile string) *secureStack {
	t.Helper()
	ss := &secureStack{certs: writeCerts(t)}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	ss.readerK = kp
	t.Setenv("XMODAL_SERVICE_PASSWORD", "service-secret")
	t.Setenv("XMODAL_READER_PASSWORD", "reader-secret")
	t.Setenv("XMODAL_ADMIN_PASSWORD", "admin-secret")
	t.Setenv("XMODAL_READER_NKEY", pub)
	t.Setenv("XMODAL_NATS_CERT", ss.certs.cert)
	t.Setenv("XMODAL_NATS_KEY", ss.certs.key)
	t.Setenv("XMODAL_NATS_CA", ss.certs.ca)
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ConfigFile: filepath.Join("..", "deploy", "nats", confFile)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	ss.url = ns.ClientURL()
	opts := []nats.Option{nats.UserInfo("xmodal", "service-secret")}
	if strings.Contains(confFile, "tls") {
		opts = append(opts, nats.RootCAs(ss.certs.ca))
	}
	ss.stack = newStackOn(t, ss.url, opts)
	return ss
}

// newStackOn is newStack on an existing server, the service connecting with opts.
func newStackOn(t *testing.T, url string, opts []nats.Option) *stack {
	t.Helper()
	s := newStack(t, query.Config{}, nil) // model, index and a service on a private server
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("service connection: %v", err)
	}
	t.Cleanup(nc.Close)
	// The banks live in this server's JetStream, reached as the service user
	// of the shipped configuration.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := bankstore.Open(context.Background(), js, bankstore.Config{})
	switch {
	case errors.Is(err, replstate.ErrNoJetStream):
		bs = s.banks // a server started without JetStream (the max_payload test)
	case err != nil:
		t.Fatalf("banks on the configured server: %v", err)
	default:
		t.Cleanup(bs.Close)
	}
	svc, err := query.New(query.Config{Name: "xmodal"}, query.Deps{Index: s.ix, Encoder: s.model, Decode: decodeQuery, Deny: s.deny, Banks: bs})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	if err := nc.Flush(); err != nil { // the server has the subscriptions
		t.Fatal(err)
	}
	return &stack{svc: svc, nc: nc, cl: client.New(nc), model: s.model, ix: s.ix, deny: s.deny, banks: bs, texts: s.texts, imgs: s.imgs}
}

// nkeyReaderInbox is the inbox prefix deploy/nats/xmodal.conf gives its nkey
// reader (an nkey user has no name to derive one from).
const nkeyReaderInbox = "_INBOX_reader_nkey"

// userInbox is the connection option of user's inbox prefix.
func userInbox(t *testing.T, user string) nats.Option {
	t.Helper()
	o, err := client.UserInbox(user)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func connect(t *testing.T, url string, opts ...nats.Option) (*client.Client, error) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	return client.New(nc), nil
}

func TestNATSUserPasswordAndPermissions(t *testing.T) {
	ss := newSecureStack(t, "xmodal.conf")
	ctx := context.Background()
	if _, err := connect(t, ss.url); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connection: %v, want an authorization violation", err)
	}
	if _, err := connect(t, ss.url, nats.UserInfo("reader", "wrong")); err == nil {
		t.Error("a wrong password connected")
	}
	var violations = make(chan error, 4)
	reader, err := connect(t, ss.url, nats.UserInfo("reader", "reader-secret"), userInbox(t, "reader"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Search(ctx, &query.SearchRequest{Text: ss.texts[0], K: 1}); err != nil {
		t.Fatalf("reader search: %v", err)
	}
	// The reader may not call the admin subject: the server refuses the publish.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := reader.Delete(dctx, &query.DeleteRequest{PostIDs: []string{"t0"}}); err == nil {
		t.Fatal("a reader deleted a post")
	}
	select {
	case err := <-violations:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("async error %v, want a permissions violation", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("no permissions violation reported to the reader")
	}
	if got, err := reader.Get(ctx, &query.GetRequest{PostIDs: []string{"t0"}}); err != nil || len(got.Records) != 1 {
		t.Fatalf("t0 after the refused delete: %v %v", got, err)
	}
	// The moderator may.
	admin, err := connect(t, ss.url, nats.UserInfo("moderator", "admin-secret"), userInbox(t, "moderator"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := admin.Delete(ctx, &query.DeleteRequest{PostIDs: []string{"t0"}}); err != nil || res.Count != 1 {
		t.Fatalf("moderator delete: %+v %v", res, err)
	}
	if _, err := reader.Get(ctx, &query.GetRequest{PostIDs: []string{"t0"}}); query.AsError(err).Code != 404 {
		t.Errorf("t0 after the moderator's delete: %v", err)
	}
	// Banks: a reader lists, gets and matches; changing a bank is the
	// moderator's (xmodal.v1.admin.banks.*, under the admin rules).
	bctx, bcancel := context.WithTimeout(ctx, 2*time.Second)
	defer bcancel()
	if err := reader.Call(bctx, "admin.banks.create", query.BankRequest{Name: "by-reader"}, nil); err == nil {
		t.Fatal("a reader created a bank")
	}
	select {
	case err := <-violations:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("async error %v, want a permissions violation", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("no permissions violation reported to the reader creating a bank")
	}
	if err := admin.Call(ctx, "admin.banks.create", query.BankRequest{Name: "mods", Actor: "moderator"}, nil); err != nil {
		t.Fatalf("moderator creates a bank: %v", err)
	}
	var lr query.BanksListResponse
	if err := reader.Call(ctx, "banks.list", struct{}{}, &lr); err != nil || len(lr.Banks) != 1 || lr.Banks[0].Name != "mods" {
		t.Fatalf("reader banks.list: %+v %v", lr, err)
	}
	if err := reader.Call(ctx, "banks.get", query.BankNameRequest{Name: "mods"}, nil); err != nil {
		t.Fatalf("reader banks.get: %v", err)
	}
	var mr query.MatchResponse
	if err := reader.Call(ctx, "match", query.MatchRequest{Text: "anything"}, &mr); err != nil {
		t.Fatalf("reader match: %v", err)
	}
}

func TestNATSNkeyAuth(t *testing.T) {
	ss := newSecureStack(t, "xmodal.conf")
	pub, _ := ss.readerK.PublicKey()
	sign := func(nonce []byte) ([]byte, error) { return ss.readerK.Sign(nonce) }
	cl, err := connect(t, ss.url, nats.Nkey(pub, sign), nats.CustomInboxPrefix(nkeyReaderInbox))
	if err != nil {
		t.Fatalf("nkey connection: %v", err)
	}
	if _, err := cl.Search(context.Background(), &query.SearchRequest{Text: "x"}); err != nil {
		t.Errorf("search over an nkey connection: %v", err)
	}
	if _, err := cl.Stats(context.Background()); err != nil {
		t.Fatalf("stats over an nkey connection: %v", err)
	}
	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()
	if _, err := connect(t, ss.url, nats.Nkey(opub, func(n []byte) ([]byte, error) { return other.Sign(n) })); err == nil {
		t.Error("an unknown nkey connected")
	}
	// The nkey reader has the reader's permissions: no admin.
	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := cl.Delete(dctx, &query.DeleteRequest{PostIDs: []string{"t1"}}); err == nil {
		t.Error("an nkey reader deleted a post")
	}
	// A seed file works the same way (the config key nats.nkey_seed_file).
	seed, _ := ss.readerK.Seed()
	path := filepath.Join(t.TempDir(), "reader.nk")
	os.WriteFile(path, seed, 0o600)
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, ss.url, opt, nats.CustomInboxPrefix(nkeyReaderInbox)); err != nil {
		t.Errorf("seed file connection: %v", err)
	}
}

func TestNATSTLS(t *testing.T) {
	ss := newSecureStack(t, "xmodal-tls.conf")
	tlsURL := strings.Replace(ss.url, "nats://", "tls://", 1)
	cl, err := connect(t, tlsURL, nats.UserInfo("reader", "reader-secret"), userInbox(t, "reader"), nats.RootCAs(ss.certs.ca))
	if err != nil {
		t.Fatalf("TLS connection: %v", err)
	}
	if _, err := cl.Search(context.Background(), &query.SearchRequest{Text: "over tls", K: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, tlsURL, nats.UserInfo("reader", "reader-secret")); err == nil {
		t.Error("connected without trusting the server's CA")
	}
}

func TestRedisAuthAndTLS(t *testing.T) {
	ctx := context.Background()
	rs := testutil.StartRedis(t, redisserver.Options{Password: "redis-secret"})
	bad, _ := query.NewRedisCache(query.RedisOptions{Addr: rs.Addr, Password: "wrong"})
	defer bad.Close()
	if err := bad.Ping(ctx); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v, want WRONGPASS", err)
	}
	if err := bad.Ping(ctx); !errors.Is(err, query.ErrCacheAuth) {
		t.Errorf("wrong password: %v, want ErrCacheAuth", err)
	}
	none, _ := query.NewRedisCache(query.RedisOptions{Addr: rs.Addr})
	defer none.Close()
	if err := none.Ping(ctx); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("no password: %v, want NOAUTH", err)
	}
	if err := none.Ping(ctx); !errors.Is(err, query.ErrCacheAuth) {
		t.Errorf("no password: %v, want ErrCacheAuth", err)
	}
	good, _ := query.NewRedisCache(query.RedisOptions{Addr: rs.Addr, Password: "redis-secret"})
	defer good.Close()
	if err := good.Ping(ctx); err != nil {
		t.Fatalf("right password: %v", err)
	}
	cs := newCachedStack(t, query.Config{}, good, nil, 0)
	cs.search(t, query.SearchRequest{Text: "behind AUTH", K: 2})
	if !cs.search(t, query.SearchRequest{Text: "behind AUTH", K: 2}).Cached {
		t.Error("no hit through an authenticated Redis")
	}

	c := writeCerts(t)
	ts := testutil.StartRedis(t, redisserver.Options{CertFile: c.cert, KeyFile: c.key, CAFile: c.ca, Password: "tls-secret"})
	plain, _ := query.NewRedisCache(query.RedisOptions{Addr: ts.Addr, Password: "tls-secret", Timeout: 300 * time.Millisecond})
	defer plain.Close()
	if err := plain.Ping(ctx); err == nil {
		t.Error("a plain-text client talked to the TLS port")
	} else if errors.Is(err, query.ErrCacheAuth) {
		t.Errorf("a plain-text client on the TLS port: %v was taken for bad credentials", err)
	}
	untrusted, _ := query.NewRedisCache(query.RedisOptions{Addr: ts.Addr, Password: "tls-secret", TLS: true, Timeout: 300 * time.Millisecond})
	defer untrusted.Close()
	if err := untrusted.Ping(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("TLS without the CA: %v, want a certificate error", err)
	} else if errors.Is(err, query.ErrCacheAuth) {
		t.Errorf("TLS without the CA: %v was taken for bad credentials", err)
	}
	tlsC, err := query.NewRedisCache(query.RedisOptions{Addr: ts.Addr, Password: "tls-secret", TLS: true, CAFile: c.ca, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsC.Close()
	if err := tlsC.Ping(ctx); err != nil {
		t.Fatalf("TLS with the CA: %v", err)
	}
	cs2 := newCachedStack(t, query.Config{}, tlsC, nil, 0)
	cs2.search(t, query.SearchRequest{Text: "over TLS", K: 2})
	if !cs2.search(t, query.SearchRequest{Text: "over TLS", K: 2}).Cached {
		t.Error("no hit through a TLS Redis")
	}
}
