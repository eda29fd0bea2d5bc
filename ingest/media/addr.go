package media

import (
	"fmt"
	"net/netip"
	"strings"
)

// A blockedRange is an address range that a fetch may not reach unless
// allow-listed, with the word used in the refusal reason.
type blockedRange struct {
	prefix netip.Prefix
	what   string
}

// blocked lists the non-public ranges, most specific first where they nest
// (255.255.255.255 inside 240/4). IPv4-mapped (::ffff:0:0/96) addresses are
// unmapped before the lookup, and the IPv4 address embedded in NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses is checked as well.
var blocked = func() []blockedRange {
	var out []blockedRange
	for _, r := range []struct{ cidr, what string }{
		{"0.0.0.0/8", "unspecified (0.0.0.0/8)"},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "shared address space (CGNAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "reserved for IETF protocol assignments"},
		{"192.0.2.0/24", "reserved for documentation"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "reserved for benchmarking"},
		{"198.51.100.0/24", "reserved for documentation"},
		{"203.0.113.0/24", "reserved for documentation"},
		{"224.0.0.0/4", "multicast"},
		{"255.255.255.255/32", "broadcast"},
		{"240.0.0.0/4", "reserved"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible (deprecated)"},
		{"64:ff9b:1::/48", "local-use NAT64"},
		{"100::/64", "discard-only"},
		{"2001::/32", "Teredo"},
		{"2001:db8::/32", "reserved for documentation"},
		{"fc00::/7", "private (unique local)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	} {
		out = append(out, blockedRange{netip.MustParsePrefix(r.cidr), r.what})
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// nonPublic reports why ip is not a public unicast address, or "" when it is.
// The reason names the address as written by the caller of the check.
func nonPublic(ip netip.Addr) string {
	ip = ip.WithZone("").Unmap()
	for _, b := range blocked {
		if b.prefix.Contains(ip) {
			return b.what
		}
	}
	if ip.Is6() {
		a := ip.As16()
		var embedded netip.Addr
		switch {
		case nat64.Contains(ip):
			embedded = netip.AddrFrom4([4]byte(a[12:16]))
		case sixToFour.Contains(ip):
			embedded = netip.AddrFrom4([4]byte(a[2:6]))
		}
		if embedded.IsValid() {
			if why := nonPublic(embedded); why != "" {
				return fmt.Sprintf("an IPv6 form of %s, which is %s", embedded, why)
			}
		}
	}
	return ""
}

// allowList holds Config.AllowPrivate, parsed.
type allowList struct {
	prefixes []netip.Prefix
	hosts    map[string]bool
	option   string // the setting that lists them, named in refusals
}

func parseAllowList(entries []string) (allowList, error) {
	al := allowList{hosts: map[string]bool{}}
	for i, e := range entries {
		s := strings.TrimSpace(e)
		switch {
		case s == "":
			return al, fmt.Errorf("media: AllowPrivate[%d] is empty", i)
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return al, fmt.Errorf("media: AllowPrivate[%d] %q is not a valid CIDR: %v", i, e, err)
			}
			al.prefixes = append(al.prefixes, p.Masked())
		default:
			if ip, err := netip.ParseAddr(s); err == nil {
				ip = ip.WithZone("").Unmap()
				al.prefixes = append(al.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
				continue
			}
			h := canonicalHost(s)
			if !validHostName(h) {
				return al, fmt.Errorf("media: AllowPrivate[%d] %q is neither a CIDR, an IP address nor a host name", i, e)
			}
			al.hosts[h] = true
		}
	}
	return al, nil
}

// addrAllowed reports whether ip is inside an allow-listed prefix.
func (al allowList) addrAllowed(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	for _, p := range al.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// hostAllowed reports whether the host name (not an IP literal) is allow-listed.
func (al allowList) hostAllowed(host string) bool {
	return len(al.hosts) > 0 && al.hosts[canonicalHost(host)]
}

func canonicalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// validHostName accepts LDH labels (and underscores, seen in the wild).
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// refusal returns the reason ip may not be dialled for a URL whose host name
// is allow-listed (byName) or not, or "" when it may.
func (al allowList) refusal(ip netip.Addr, byName bool) string {
	why := nonPublic(ip)
	if why == "" || byName || al.addrAllowed(ip) {
		return ""
	}
	r := fmt.Sprintf("address %s is %s", ip.WithZone(""), why)
	if al.option != "" {
		r += fmt.Sprintf(" (to fetch from it on purpose, add %s or the URL's host name to %s)", ip.WithZone("").Unmap(), al.option)
	}
	return r
}
