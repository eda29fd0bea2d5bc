package media

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNonPublic(t *testing.T) {
	for _, tc := range []struct {
		addr, why string // why "" = public
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.5.4", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "shared address space (CGNAT)"},
		{"100.127.255.255", "shared address space (CGNAT)"},
		{"169.254.169.254", "link-local"},
		{"0.0.0.0", "unspecified (0.0.0.0/8)"},
		{"0.1.2.3", "unspecified (0.0.0.0/8)"},
		{"255.255.255.255", "broadcast"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"192.0.0.170", "reserved for IETF protocol assignments"},
		{"192.0.2.1", "reserved for documentation"},
		{"198.18.0.1", "reserved for benchmarking"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::127.0.0.1", "IPv4-compatible (deprecated)"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.0.0.1", "private"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::ffff:0.0.0.0", "unspecified (0.0.0.0/8)"},
		{"fc00::1", "private (unique local)"},
		{"fd12:3456::1", "private (unique local)"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fec0::1", "site-local (deprecated)"},
		{"ff02::1", "multicast"},
		{"64:ff9b::a00:1", "an IPv6 form of 10.0.0.1, which is private"},
		{"64:ff9b::a9fe:a9fe", "an IPv6 form of 169.254.169.254, which is link-local"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"2002:7f00:1::", "an IPv6 form of 127.0.0.1, which is loopback"},
		{"2001:db8::1", "reserved for documentation"},
		{"2001::1", "Teredo"},
		{"100::1", "discard-only"},
		// public
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"169.255.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::", ""},
	} {
		if got := nonPublic(netip.MustParseAddr(tc.addr)); got != tc.why {
			t.Errorf("nonPublic(%s) = %q, want %q", tc.addr, got, tc.why)
		}
	}
}

func TestAllowList(t *testing.T) {
	al, err := parseAllowList([]string{"127.0.0.0/8", "fd00::/8", "10.1.2.3", " cdn.internal. ", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr   string
		byName bool
		ok     bool
	}{
		{"127.0.0.1", false, true},
		{"::ffff:127.0.0.1", false, true}, // mapped form of an allowed address
		{"10.1.2.3", false, true},
		{"10.1.2.4", false, false},
		{"fd00::5", false, true},
		{"::1", false, true},
		{"169.254.169.254", false, false},
		{"169.254.169.254", true, true}, // allow-listed host name: anything it resolves to
		{"8.8.8.8", false, true},        // public: always
	} {
		if got := al.refusal(netip.MustParseAddr(tc.addr), tc.byName) == ""; got != tc.ok {
			t.Errorf("refusal(%s, byName=%v) allowed=%v, want %v", tc.addr, tc.byName, got, tc.ok)
		}
	}
	if !al.hostAllowed("CDN.internal") || !al.hostAllowed("cdn.internal.") || al.hostAllowed("x.cdn.internal") {
		t.Error("host matching must be exact, case-insensitive, trailing dot ignored")
	}
	for _, bad := range []string{"10.0.0.0/33", "x/y", "a b", "exa mple.com", "..", strings.Repeat("a", 64) + ".com"} {
		if _, err := parseAllowList([]string{bad}); err == nil {
			t.Errorf("parseAllowList(%q) accepted", bad)
		}
	}
}
