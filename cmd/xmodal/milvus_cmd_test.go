package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The milvus subcommands reach sink/milvus's SwapAlias and DropModel with the
// milvus.* configuration and the model version argument. (The functions
// themselves are tested against a real Milvus in sink/milvus.)
func TestMilvusAdminCommandsWiring(t *testing.T) {
	t.Setenv("XMODAL_CONFIG", "")
	t.Setenv("XMODAL_MILVUS_ADDRESS", "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"swap without an address", []string{"milvus", "swap-alias", "clip@2"}, "config milvus.address: required"},
		{"drop without an address", []string{"milvus", "drop-model", "clip@1"}, "config milvus.address: required"},
		{"migrate without an address", []string{"milvus", "migrate", "clip@1"}, "config milvus.address: required"},
		{"migrate without a version", []string{"milvus", "migrate", "--milvus-address", "127.0.0.1:1"}, "accepts 1 arg(s), received 0"},
		{"swap without a version", []string{"milvus", "swap-alias", "--milvus-address", "127.0.0.1:1"}, "accepts 1 arg(s), received 0"},
		{"drop with two versions", []string{"milvus", "drop-model", "--milvus-address", "127.0.0.1:1", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"bad collection name", []string{"milvus", "drop-model", "--milvus-address", "127.0.0.1:1", "--milvus-collection", "1bad", "clip@1"}, `config milvus.collection: "1bad"`},
		{"swap to an unreachable Milvus", []string{"milvus", "swap-alias", "--milvus-address", "127.0.0.1:1", "--milvus-start-timeout", "1s",
			"--milvus-dial-timeout", "200ms", "clip@2"}, "config milvus.address: milvus unreachable: no answer from 127.0.0.1:1"},
		{"drop on an unreachable Milvus", []string{"milvus", "drop-model", "--milvus-address", "127.0.0.1:1", "--milvus-start-timeout", "1s",
			"--milvus-dial-timeout", "200ms", "clip@1"}, "config milvus.address: milvus unreachable: no answer from 127.0.0.1:1"},
		{"migrate on an unreachable Milvus", []string{"milvus", "migrate", "--milvus-address", "127.0.0.1:1", "--milvus-start-timeout", "1s",
			"--milvus-dial-timeout", "200ms", "clip@1"}, "config milvus.address: milvus unreachable: no answer from 127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(tt.args, "--log-level", "error"))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := root.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q (output %s)", err, tt.want, out.String())
			}
		})
	}
}
