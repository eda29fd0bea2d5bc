package kafka

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestDocsKafkaCommands runs the shell block of docs/kafka.md marked
// "tested: TestDocsKafkaCommands" against the test broker (its address in
// place of 127.0.0.1:9092, a topic of its own in place of posts), so the
// commands the docs give work as written, with the tools scripts/kafka.sh
// provides.
func TestDocsKafkaCommands(t *testing.T) {
	addr := broker.Need(t).Plain()
	root := testutil.MustRepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "kafka.md"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- tested: TestDocsKafkaCommands -->"
	_, rest, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("docs/kafka.md has no %q block", marker)
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok || strings.TrimSpace(block) == "" {
		t.Fatal("the tested block of docs/kafka.md is empty or unterminated")
	}
	topic := name(t, "docposts")
	script := strings.NewReplacer("127.0.0.1:9092", addr, "--topic posts", "--topic "+topic).Replace(block)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the commands of docs/kafka.md failed: %v\n%s", err, out)
	}
	for _, want := range []string{"PartitionCount: 6", "p1\t{\"schema\":1", topic + ":0:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
}
