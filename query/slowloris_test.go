package query_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/query"
)

// slowServer serves the gateway through query.NewHTTPServer with short
// deadlines, on a real listener.
func slowServer(t *testing.T, deadline time.Duration) string {
	t.Helper()
	s := newStack(t, query.Config{}, nil)
	srv, err := query.NewHTTPServer(query.NewGateway(s.svc, query.GatewayOptions{BodyTimeout: deadline}),
		query.HTTPConfig{ReadHeaderTimeout: deadline, BodyTimeout: deadline})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// trickle writes head at once, then tail one byte per step, until the server
// closes the connection or tail runs out. It returns what the server sent
// and how many bytes of tail were written.
func trickle(t *testing.T, addr, head, tail string, step time.Duration) (reply string, sent int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := make(chan string, 1)
	go func() {
		var b strings.Builder
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				read <- b.String()
				return
			}
		}
	}()
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	for sent = 0; sent < len(tail); sent++ {
		select {
		case reply = <-read:
			return reply, sent // the server closed the connection
		case <-time.After(step):
		}
		if _, err := c.Write([]byte{tail[sent]}); err != nil {
			return <-read, sent // closed
		}
	}
	c.(*net.TCPConn).CloseWrite()
	return <-read, sent
}

// TestGatewayCutsOffSlowClients (issue #15 item 6): a body trickled a byte at
// a time is cut off at the body deadline with 408, and headers trickled a
// byte at a time at the header deadline; neither holds the connection for as
// long as the client likes. The client would take 20 deadlines to finish.
func TestGatewayCutsOffSlowClients(t *testing.T) {
	const deadline = 300 * time.Millisecond
	step := deadline / 3
	addr := slowServer(t, deadline)
	body := `{"text":"` + strings.Repeat("a", 60) + `"}`
	t.Run("body", func(t *testing.T) {
		head := fmt.Sprintf("POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		reply, sent := trickle(t, addr, head, body, step)
		if sent == len(body) {
			t.Fatalf("the whole body was trickled over %v without the server cutting it off (reply %q)", time.Duration(len(body))*step, reply)
		}
		if !strings.HasPrefix(reply, "HTTP/1.1 408 ") || !strings.Contains(reply, "request body not received within") {
			t.Errorf("reply %q, want 408 naming the body deadline", reply)
		}
	})
	t.Run("headers", func(t *testing.T) {
		head := "POST /v1/search HTTP/1.1\r\nHost: x\r\n"
		tail := "X-Slow: " + strings.Repeat("b", 60) + "\r\n\r\n"
		if reply, sent := trickle(t, addr, head, tail, step); sent == len(tail) {
			t.Fatalf("the headers were trickled over %v without the server cutting them off (reply %q)", time.Duration(len(tail))*step, reply)
		}
	})
	t.Run("a prompt client is served", func(t *testing.T) {
		res, err := http.Post("http://"+addr+"/v1/search", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("status %d, want 200", res.StatusCode)
		}
	})
}

// TestHTTPConfigValidate: deadlines that cannot work are refused.
func TestHTTPConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c  query.HTTPConfig
		ok bool
	}{
		{query.HTTPConfig{}, true},
		{query.HTTPConfig{BodyTimeout: -1}, false},
		{query.HTTPConfig{BodyTimeout: 10 * time.Second, RequestTimeout: 5 * time.Second, WriteTimeout: time.Second}, false},
	} {
		_, err := query.NewHTTPServer(http.NotFoundHandler(), tc.c)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err %v, want ok=%v", tc.c, err, tc.ok)
		}
	}
}
