package natsserver_test

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/internal/fsprobe"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/testutil"
)

// TestStartNamesTheCause (issue #15 item 7): a store directory that cannot
// be written is reported at once, naming it (it used to take 10 s and say
// "port in use?" with the port free); a port that is taken is named as such.
func TestStartNamesTheCause(t *testing.T) {
	ro := testutil.ReadOnlyDir(t)
	for _, store := range []string{ro, filepath.Join(ro, "jetstream")} {
		_, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: store})
		var nw *fsprobe.NotWritableError
		if !errors.As(err, &nw) || nw.Dir != store || strings.Contains(err.Error(), "port in use") {
			t.Errorf("store %s: %v; want a NotWritableError naming it", store, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = natsserver.Start(natsserver.Options{Listen: ln.Addr().String(), StoreDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("taken port: %v; want the listen error", err)
	}
}
