package kafka

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/ingest"
)

func TestTrackerSafeIsLowestUnacked(t *testing.T) {
	tr := newTracker()
	if got := tr.safe(); got != -1 {
		t.Fatalf("empty tracker safe = %d, want -1", got)
	}
	// Offsets with gaps (compaction, transaction markers).
	offs := []int64{5, 6, 8, 9, 12, 13, 14}
	for _, o := range offs {
		if !tr.add(o) {
			t.Fatalf("add(%d) refused", o)
		}
	}
	if tr.add(7) {
		t.Fatal("add of a lower offset accepted")
	}
	steps := []struct {
		ack  int64
		want int64
	}{
		{6, 5}, {9, 5}, {5, 8}, {8, 12}, {14, 12}, {13, 12}, {12, 15},
	}
	for _, s := range steps {
		if !tr.ack(s.ack) {
			t.Fatalf("ack(%d) not outstanding", s.ack)
		}
		if got := tr.safe(); got != s.want {
			t.Fatalf("after ack %d: safe = %d, want %d", s.ack, got, s.want)
		}
	}
	if tr.ack(12) || tr.ack(7) || tr.ack(100) {
		t.Fatal("ack of a done or unknown offset reported outstanding")
	}
	if tr.outstanding() != 0 {
		t.Fatalf("outstanding = %d", tr.outstanding())
	}
}

func TestTrackerRandomAckOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		tr := newTracker()
		n := 1 + r.IntN(3000)
		for i := 0; i < n; i++ {
			tr.add(int64(i))
		}
		acked := make([]bool, n)
		for _, i := range r.Perm(n) {
			tr.ack(int64(i))
			acked[i] = true
			want := int64(n)
			for j, a := range acked {
				if !a {
					want = int64(j)
					break
				}
			}
			if i%97 == 0 || want == int64(n) {
				if got := tr.safe(); got != want {
					t.Fatalf("round %d: safe = %d, want %d", round, got, want)
				}
			}
		}
	}
}

func TestSpansAttempts(t *testing.T) {
	prior := []span{{10, 50}, {10, 30}, {40, 45}}
	for _, c := range []struct {
		off  int64
		want int
	}{{9, 1}, {10, 3}, {30, 3}, {31, 2}, {42, 3}, {51, 1}} {
		if got := attemptOf(prior, c.off); got != c.want {
			t.Errorf("attemptOf(%d) = %d, want %d", c.off, got, c.want)
		}
	}
	p := prune(prior, 35)
	if len(p) != 2 || p[0] != (span{35, 50}) || p[1] != (span{40, 45}) {
		t.Fatalf("prune = %v", p)
	}
	if got := prune(prior, -1); len(got) != 3 {
		t.Fatalf("prune with no commit dropped spans: %v", got)
	}
	b := encodeSpans(p)
	back, err := decodeSpans(b)
	if err != nil || len(back) != 2 || back[0] != p[0] || back[1] != p[1] {
		t.Fatalf("round trip %s: %v %v", b, back, err)
	}
	if _, err := decodeSpans([]byte(`{"v":2}`)); err == nil {
		t.Fatal("unknown version accepted")
	}
	long := make([]span, 100)
	for i := range long {
		long[i] = span{int64(i), 1000}
	}
	if got := prune(long, -1); len(got) != maxSpans || got[0].From != 100-maxSpans {
		t.Fatalf("prune kept %d spans from %d", len(got), got[0].From)
	}
}

func TestParseOrigin(t *testing.T) {
	topic, p, o, ok := ParseOrigin("topic posts.v1 partition 3 offset 17")
	if !ok || topic != "posts.v1" || p != 3 || o != 17 {
		t.Fatalf("got %q %d %d %v", topic, p, o, ok)
	}
	for _, bad := range []string{"", "stream XMODAL_POSTS seq 42", "topic t partition -1 offset 2", "topic t partition 1 offset x"} {
		if _, _, _, ok := ParseOrigin(bad); ok {
			t.Errorf("ParseOrigin(%q) ok", bad)
		}
	}
}

func TestDeadLetterHeadersKeepOriginalsAndReplaceOurs(t *testing.T) {
	m := ingest.NewMessage("p1", []byte(`{}`), nil)
	m.Origin, m.Attempt = "topic posts partition 2 offset 9", 4
	m.Headers = map[string]string{"trace": "abc", ingest.HeaderReason: "stale"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hs := DeadLetterHeaders(m, ingest.StageDecode, "bad json", at)
	got := map[string]string{}
	for _, h := range hs {
		if _, dup := got[h.Key]; dup {
			t.Fatalf("duplicate header %s", h.Key)
		}
		got[h.Key] = string(h.Value)
	}
	want := map[string]string{"trace": "abc", ingest.HeaderKey: "p1", ingest.HeaderReason: "bad json",
		ingest.HeaderStage: "decode", ingest.HeaderOrigin: m.Origin, ingest.HeaderAttempt: "4",
		ingest.HeaderFailed: "2026-01-02T03:04:05Z", HeaderSourceTopic: "posts", HeaderSourcePartition: "2", HeaderSourceOffset: "9"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("headers %v", got)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "posts", Group: "indexer"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	d := ok.WithDefaults()
	if d.DLQTopic != "posts.dlq" || d.AttemptsTopic != "indexer.attempts" || d.SessionTimeout < MinSessionTimeout {
		t.Fatalf("defaults: %+v", d)
	}
	for _, c := range []struct {
		field string
		edit  func(*Config)
	}{
		{"Brokers", func(c *Config) { c.Brokers = nil }},
		{"Brokers[1]", func(c *Config) { c.Brokers = append(c.Brokers, "nohost") }},
		{"Topic", func(c *Config) { c.Topic = "" }},
		{"Topic", func(c *Config) { c.Topic = "bad topic" }},
		{"Group", func(c *Config) { c.Group = "" }},
		{"DLQTopic", func(c *Config) { c.DLQTopic = "posts" }},
		{"AttemptsTopic", func(c *Config) { c.AttemptsTopic = "posts.dlq" }},
		{"SASL.Mechanism", func(c *Config) { c.SASL = SASL{Mechanism: "gssapi", User: "u"} }},
		{"SASL.Mechanism", func(c *Config) { c.SASL = SASL{User: "u", Password: "p"} }},
		{"SASL.User", func(c *Config) { c.SASL = SASL{Mechanism: "scram-sha-512"} }},
		{"TLS.CertFile", func(c *Config) { c.TLS.KeyFile = "k.pem" }},
		{"MaxBytes", func(c *Config) { c.MinBytes, c.MaxBytes = 100, 10 }},
		{"SessionTimeout", func(c *Config) { c.SessionTimeout = 2 * time.Second }},
		{"HeartbeatInterval", func(c *Config) { c.HeartbeatInterval = 5 * time.Second }},
		{"StartOffset", func(c *Config) { c.StartOffset = "middle" }},
		{"CommitInterval", func(c *Config) { c.CommitInterval = -time.Second }},
	} {
		cfg := ok
		cfg.Brokers = append([]string(nil), ok.Brokers...)
		c.edit(&cfg)
		err := cfg.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: got %v", c.field, err)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: message %q does not name the field", c.field, err)
		}
	}
	cfg := ok
	cfg.TLS.CAFile = "/nonexistent/ca.pem"
	cfg = cfg.WithDefaults()
	if _, err := cfg.Connect(); err == nil || !strings.Contains(err.Error(), "TLS.CAFile") {
		t.Fatalf("missing CA file: %v", err)
	}
}
