package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Kafka is a real Apache Kafka broker run by scripts/kafka.sh on three ports of
// its own (plain, SASL/PLAIN = plain+1 unless chosen, controller) and a data
// directory of its own under .cache/kafka. StartKafka starts one for a test;
// SharedKafka shares one among a package's tests.
type Kafka struct {
	root                     string
	port, saslPort, ctrlPort int
	data                     string
}

// Plain is the broker's plain-text address.
func (b *Kafka) Plain() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// SASL is the broker's SASL/PLAIN address.
func (b *Kafka) SASL() string { return "127.0.0.1:" + strconv.Itoa(b.saslPort) }

// Port is the plain-text port.
func (b *Kafka) Port() int { return b.port }

// Script runs scripts/kafka.sh with the broker's ports and data directory.
func (b *Kafka) Script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(b.root, "scripts", "kafka.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "KAFKA_DATA="+b.data)
	if b.port != 0 { // stopping a broker needs only its data directory
		cmd.Env = append(cmd.Env, "KAFKA_PORT="+strconv.Itoa(b.port), "KAFKA_SASL_PORT="+strconv.Itoa(b.saslPort),
			"KAFKA_CONTROLLER_PORT="+strconv.Itoa(b.ctrlPort))
	}
	cmd.Dir = b.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Stop stops the broker (its data stays, for Restart).
func (b *Kafka) Stop(t TB) {
	t.Helper()
	if out, err := b.Script(time.Minute, "stop"); err != nil {
		t.Fatalf("scripts/kafka.sh stop: %v\n%s", err, out)
	}
}

// Restart starts a stopped broker again on the same ports and data, and waits
// until every partition of every topic has a leader again: "Kafka Server
// started" comes before the restarted broker is unfenced, and a producer that
// writes in between sees "no leader" for as long as that takes (long on a
// loaded machine). It then drops the connections kafka-go's DefaultTransport
// pooled before the stop (the tests' admin clients and writers share it), which
// otherwise answer the next requests with "unexpected EOF".
func (b *Kafka) Restart(t TB) {
	t.Helper()
	if out, err := b.Script(5*time.Minute, "start"); err != nil {
		t.Fatalf("Kafka broker did not restart: scripts/kafka.sh start: %v\n%s", err, out)
	}
	if tr, ok := kafkago.DefaultTransport.(*kafkago.Transport); ok {
		tr.CloseIdleConnections()
	}
	cl, done := b.Client()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if last = leadersElected(ctx, cl); last == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(b.data, "kafka.log"))
	if len(log) > 4000 {
		log = log[len(log)-4000:]
	}
	t.Fatalf("Kafka broker restarted but its partitions have no leader after 3 minutes: %v\nend of kafka.log:\n%s", last, log)
}

// leadersElected reports the first partition, of any topic, without a leader.
func leadersElected(ctx context.Context, cl *kafkago.Client) error {
	md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return fmt.Errorf("topic %s: %w", tp.Name, tp.Error)
		}
		for _, p := range tp.Partitions {
			if p.Leader.ID < 0 || p.Error != nil {
				return fmt.Errorf("topic %s: partition %d has no leader (%v)", tp.Name, p.ID, p.Error)
			}
		}
	}
	return nil
}

// Client returns an admin client with a transport of its own: kafka-go's
// default transport caches metadata for seconds, which hides topics created
// meanwhile. Call the returned function when done.
func (b *Kafka) Client() (*kafkago.Client, func()) {
	tr := &kafkago.Transport{DialTimeout: 10 * time.Second, MetadataTTL: time.Second}
	return &kafkago.Client{Addr: kafkago.TCP(b.Plain()), Timeout: 20 * time.Second, Transport: tr}, tr.CloseIdleConnections
}

// CreateTopic creates a topic with n partitions and waits until each has a
// leader (through a client of its own: see Client).
func (b *Kafka) CreateTopic(t TB, name string, n int) {
	t.Helper()
	cl, done := b.Client()
	defer done()
	CreateKafkaTopic(t, cl, name, n)
}

// CreateKafkaTopic creates a topic with n partitions through cl and waits until
// each has a leader; cl's transport then knows the topic.
func CreateKafkaTopic(t TB, cl *kafkago.Client, name string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cl.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: name, NumPartitions: n, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if e := res.Errors[name]; e != nil {
		t.Fatalf("create topic %s: %v", name, e)
	}
	Eventually(t, time.Minute, func() error {
		md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{name}})
		switch {
		case err != nil:
			return fmt.Errorf("topic %s: metadata: %w", name, err)
		case len(md.Topics) != 1 || md.Topics[0].Error != nil:
			return fmt.Errorf("topic %s: not in the metadata yet", name)
		case len(md.Topics[0].Partitions) != n:
			return fmt.Errorf("topic %s: %d of %d partitions", name, len(md.Topics[0].Partitions), n)
		}
		for _, p := range md.Topics[0].Partitions {
			if p.Leader.ID < 0 || p.Error != nil {
				return fmt.Errorf("topic %s: partition %d has no leader (%v)", name, p.ID, p.Error)
			}
		}
		return nil
	})
}

func kafkaUnavailable(t TB, b *Kafka, err error, out string) {
	t.Helper()
	Unavailable(t, "Kafka broker", "`scripts/kafka.sh start` (ports %d, %d, %d) failed; it needs java >= 17, mvn and Maven Central (or a cached .cache/kafka): %v\n%s",
		b.port, b.saslPort, b.ctrlPort, err, out)
}

// kafkaSeq numbers the brokers one test process starts.
var kafkaSeq atomic.Int32

// StartKafka starts a fresh broker for t on three free ports (or on
// XMODAL_TEST_KAFKA_E2E_PORT and the two after it), so that test runs of
// several checkouts on one machine do not collide; it is stopped, and its data
// removed, when the test ends. Without java >= 17 and mvn (or a cached
// .cache/kafka) the test fails naming Kafka (Unavailable).
func StartKafka(t T) *Kafka {
	t.Helper()
	b := &Kafka{root: MustRepoRoot(t)}
	reapKafka(b.root)
	fixed := os.Getenv("XMODAL_TEST_KAFKA_E2E_PORT")
	if fixed != "" {
		var err error
		if b.port, err = strconv.Atoi(fixed); err != nil {
			t.Fatalf("XMODAL_TEST_KAFKA_E2E_PORT=%q: %v", fixed, err)
		}
		b.saslPort, b.ctrlPort = b.port+1, b.port+2
	}
	b.data = filepath.Join(b.root, ".cache", "kafka", fmt.Sprintf("test-data-e2e-%d-%d", os.Getpid(), kafkaSeq.Add(1)))
	// Free ports are found by listening on port 0 and closing; another test
	// process on the machine can take one before the broker binds it. A start
	// that fails on a taken port tries again on new ports.
	for attempt := 1; ; attempt++ {
		if fixed == "" {
			ports, err := FreePorts(3)
			if err != nil {
				t.Fatal(err)
			}
			b.port, b.saslPort, b.ctrlPort = ports[0], ports[1], ports[2]
		}
		os.RemoveAll(b.data)
		out, err := b.Script(10*time.Minute, "start")
		if err == nil {
			break
		}
		b.Script(time.Minute, "stop")
		os.RemoveAll(b.data)
		if fixed == "" && attempt < 4 && strings.Contains(out, "Address already in use") {
			t.Logf("Kafka: a port was taken before the broker bound it; trying new ports (attempt %d)", attempt+1)
			continue
		}
		kafkaUnavailable(t, b, err, out)
	}
	t.Cleanup(func() {
		if out, err := b.Script(time.Minute, "stop"); err != nil {
			t.Fatalf("scripts/kafka.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(b.data)
	})
	return b
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment
// ago (all held open together, then closed).
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// reapKafka stops the brokers, and removes the data, that test processes which
// no longer run left under .cache/kafka/test-data-e2e-<pid>-<n> (a run killed
// by go test's timeout does not run its cleanups).
func reapKafka(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, ".cache", "kafka", "test-data-e2e-*-*"))
	for _, d := range dirs {
		f := strings.Split(strings.TrimPrefix(filepath.Base(d), "test-data-e2e-"), "-")
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil || len(f) != 2 {
			continue
		}
		(&Kafka{root: root, data: d}).Script(time.Minute, "stop")
		os.RemoveAll(d)
	}
}

// SharedKafka is one broker shared by a package's tests: started on first use
// on XMODAL_TEST_KAFKA_PORT (default Port; SASL +1, controller +2) unless one
// runs there already, and stopped by Close (from TestMain) only when these
// tests started it. A broker a crashed run left behind carries a mark and is
// taken over; one started by hand is used and left running.
type SharedKafka struct {
	Port int // default port when XMODAL_TEST_KAFKA_PORT is unset

	once    sync.Once
	err     error
	out     string
	b       *Kafka
	started bool
}

// Need returns the broker, starting it on first use; a broker that cannot
// start fails the test naming Kafka (Unavailable).
func (s *SharedKafka) Need(t TB) *Kafka {
	t.Helper()
	s.once.Do(func() {
		port := s.Port
		if p := os.Getenv("XMODAL_TEST_KAFKA_PORT"); p != "" {
			if port, s.err = strconv.Atoi(p); s.err != nil {
				return
			}
		}
		s.b = &Kafka{port: port, saslPort: port + 1, ctrlPort: port + 2}
		if s.b.root, s.err = RepoRoot(); s.err != nil {
			return
		}
		s.b.data = filepath.Join(s.b.root, ".cache", "kafka", "test-data-"+strconv.Itoa(port))
		mark := filepath.Join(s.b.data, "started-by-go-test")
		if _, err := s.b.Script(30*time.Second, "status"); err == nil {
			_, err := os.Stat(mark)
			s.started = err == nil
			return
		}
		if s.out, s.err = s.b.Script(10*time.Minute, "start"); s.err != nil {
			return
		}
		s.started = true
		os.WriteFile(mark, nil, 0o644)
	})
	if s.err != nil {
		b := s.b
		if b == nil {
			b = &Kafka{port: s.Port}
		}
		kafkaUnavailable(t, b, s.err, s.out)
	}
	return s.b
}

// Close stops the broker and removes its data when these tests started it.
func (s *SharedKafka) Close() {
	if s.started {
		if out, err := s.b.Script(time.Minute, "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "scripts/kafka.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(s.b.data)
	}
}
