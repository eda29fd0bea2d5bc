// Package redisserver starts Debian's redis-server on a random loopback port for
// tests and benchmarks, optionally with a password (requirepass) and TLS.
package redisserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options for a server.
type Options struct {
	// Password sets requirepass (AUTH for the default user).
	Password string
	// TLS, when CertFile and KeyFile are set, serves TLS only (the plain port is
	// off). CAFile enables client-certificate checking when ClientAuth is set.
	CertFile, KeyFile, CAFile string
	ClientAuth                bool
	// Dir holds the server's log (and nothing else: persistence is off). Empty: a temp dir.
	Dir string
}

// Server is a running redis-server.
type Server struct {
	Addr string // 127.0.0.1:port
	opt  Options
	cmd  *exec.Cmd
	dir  string
	tmp  bool
	mu   sync.Mutex
	done chan struct{}
}

// ErrNotInstalled says redis-server is missing.
var ErrNotInstalled = errors.New("redis-server not found on PATH: install Debian's redis-server (apt-get install -y redis-server)")

// Start runs redis-server on a free loopback port and waits until it answers.
func Start(opt Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	s := &Server{opt: opt, dir: opt.Dir}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "xmodal-redis-"); err != nil {
			return nil, err
		}
		s.tmp = true
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Addr = "127.0.0.1:" + strconv.Itoa(port)
		if lastErr = s.start(bin, port); lastErr == nil {
			return s, nil
		}
	}
	s.cleanup()
	return nil, lastErr
}

func (s *Server) start(bin string, port int) error {
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"), "--protected-mode", "no", "--daemonize", "no"}
	if s.opt.CertFile != "" {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", s.opt.CertFile,
			"--tls-key-file", s.opt.KeyFile)
		if s.opt.CAFile != "" {
			args = append(args, "--tls-ca-cert-file", s.opt.CAFile)
		}
		if s.opt.ClientAuth {
			args = append(args, "--tls-auth-clients", "yes")
		} else {
			args = append(args, "--tls-auth-clients", "no")
		}
	} else {
		args = append(args, "--port", strconv.Itoa(port))
	}
	if s.opt.Password != "" {
		args = append(args, "--requirepass", s.opt.Password)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start: %s", s.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server did not listen on %s within 10s: %s", s.Addr, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same address after Kill.
func (s *Server) Restart() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return ErrNotInstalled
	}
	_, portStr, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(portStr)
	return s.start(bin, port)
}

// Close stops the server and removes its temporary folder.
func (s *Server) Close() {
	s.Kill()
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.tmp {
		os.RemoveAll(s.dir)
	}
}

// Version returns the first line of `redis-server --version`.
func Version() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Scan()
	return strings.TrimSpace(sc.Text())
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
