package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// fakeDNS is a minimal DNS responder on 127.0.0.1 UDP. It answers A and AAAA
// questions from a fixed table ("*" matches any name) and NXDOMAIN
// otherwise. It exists so that tests resolve names without sending a packet
// anywhere but loopback.
type fakeDNS struct {
	pc      net.PacketConn
	records map[string][]netip.Addr
	mu      sync.Mutex
	asked   []string
}

func startDNS(t testing.TB, records map[string][]string) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{pc: pc, records: map[string][]netip.Addr{}}
	for name, addrs := range records {
		for _, a := range addrs {
			d.records[strings.ToLower(name)] = append(d.records[strings.ToLower(name)], netip.MustParseAddr(a))
		}
	}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

// resolver returns a pure-Go resolver whose every DNS exchange goes to d,
// whatever /etc/resolv.conf names.
func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = d.pc.WriteTo(resp, from)
		}
	}
}

func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// Question: labels, then type and class.
	off := 12
	var labels []string
	for {
		if off >= len(q) {
			return nil
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[off:off+l]))
		off += l
	}
	if off+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off : off+2])
	off += 4
	name := strings.ToLower(strings.Join(labels, "."))
	d.mu.Lock()
	d.asked = append(d.asked, name)
	d.mu.Unlock()

	addrs, known := d.records[name]
	if !known {
		addrs, known = d.records["*"]
	}
	var rdata [][]byte
	for _, a := range addrs {
		switch {
		case qtype == 1 && a.Is4():
			b := a.As4()
			rdata = append(rdata, b[:])
		case qtype == 28 && a.Is6():
			b := a.As16()
			rdata = append(rdata, b[:])
		}
	}
	rcode := byte(0)
	if !known {
		rcode = 3 // NXDOMAIN
	}
	out := make([]byte, 0, 512)
	out = append(out, q[0], q[1], 0x84|q[2]&0x01, 0x80|rcode) // QR, AA, RD copied; RA
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(rdata)))
	out = append(out, 0, 0, 0, 0) // NS, AR
	out = append(out, q[12:off]...)
	for _, r := range rdata {
		out = append(out, 0xc0, 0x0c) // pointer to the question name
		out = binary.BigEndian.AppendUint16(out, qtype)
		out = binary.BigEndian.AppendUint16(out, 1) // IN
		out = binary.BigEndian.AppendUint32(out, 0) // TTL
		out = binary.BigEndian.AppendUint16(out, uint16(len(r)))
		out = append(out, r...)
	}
	return out
}

// dialLog records every socket address the fetcher was about to connect to,
// and refuses any that is not loopback so that no test can send a packet
// off the machine even if the policy were broken.
type dialLog struct {
	mu    sync.Mutex
	addrs []string
}

func (l *dialLog) hook(_, address string) error {
	l.mu.Lock()
	l.addrs = append(l.addrs, address)
	l.mu.Unlock()
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("test: refusing to dial non-loopback %s", address)
	}
	return nil
}

func (l *dialLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.addrs...)
}

// newTestFetcher builds a Fetcher with the test resolver and dial log.
func newTestFetcher(t testing.TB, cfg Config, dns *fakeDNS) (*Fetcher, *dialLog) {
	t.Helper()
	if cfg.Resolver == nil && dns != nil {
		cfg.Resolver = dns.resolver()
	}
	if cfg.Resolver == nil {
		// Never consult the machine's resolver in tests.
		cfg.Resolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, fmt.Errorf("test: no DNS")
		}}
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := &dialLog{}
	f.dialHook = log.hook
	t.Cleanup(f.Close)
	return f, log
}

// testPNG encodes a w x h PNG of noise (incompressible, so about 4*w*h bytes).
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	img.Set(0, 0, color.NRGBA{1, 2, 3, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hugePNG is a tiny file whose header declares w x h pixels.
func hugePNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := crc32.NewIEEE()
		c.Write([]byte(typ))
		c.Write(data)
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(&b, binary.BigEndian, c.Sum32())
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
