package banks

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"mvdan.cc/xurls/v2"
)

// NormalizeText is the one normalisation of text signals, applied to an
// entry when it is added and to a post's text when it is matched: text
// entries match a post when both normalise to the same string. It
//   - case-folds (Unicode full folding: "Straße" and "STRASSE" agree),
//   - decomposes compatibility forms (NFKD: full-width and styled letters,
//     ligatures, superscripts become plain ones),
//   - drops combining marks (accents: "café" is "cafe"), format
//     characters (zero-width spaces and joiners, bidi controls, soft
//     hyphens) and control characters,
//   - turns punctuation and every kind of white space into a space, then
//     collapses runs of spaces and trims them,
//
// and repeats until nothing changes (so it is idempotent: normalising a
// normalised text returns it). Invalid UTF-8 becomes U+FFFD. Letters,
// digits, symbols and emoji are kept.
func NormalizeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for range 4 {
		t := normalizeTextOnce(s)
		if t == s {
			break
		}
		s = t
	}
	return s
}

var folder = cases.Fold()

func normalizeTextOnce(s string) string {
	s = norm.NFKD.String(folder.String(s))
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Cf, r):
			continue
		case unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsControl(r):
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}

// NormalizeURL is the one normalisation of URL signals, applied to an
// entry when it is added and to a post's URLs when they are matched. The
// result is host[:port]path[?query], without scheme:
//   - a missing scheme is taken as http; http and https are the same URL
//     (the scheme is dropped); other schemes are refused;
//   - defanged forms are restored: hxxp(s)://, [h]ttp(s)://, [.] and (.);
//   - the host is lower-cased, internationalised names become punycode
//     (IDNA lookup), a trailing dot and a leading "www." are dropped, and
//     user information before an @ is dropped;
//   - default ports (80, 443) are dropped;
//   - the path has its dot segments resolved, unreserved characters
//     unescaped, escapes upper-cased, and a trailing slash dropped;
//   - query parameters used for tracking (utm_*, fbclid, gclid, dclid,
//     msclkid, mc_eid, igshid) are dropped, the others sorted;
//   - the fragment is dropped.
//
// It is idempotent. A string with no host is ErrMalformedSignal.
func NormalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", fmt.Errorf("%w: an empty URL", ErrMalformedSignal)
	}
	if len(s) > MaxRawSignalBytes {
		return "", fmt.Errorf("%w: a URL of %d bytes", ErrSignalTooLong, len(s))
	}
	s = refang(s)
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
	case strings.Contains(lower, "://"):
		return "", fmt.Errorf("%w: URL %s: only http and https URLs are matched", ErrMalformedSignal, quote(raw))
	case hasOtherScheme(s):
		return "", fmt.Errorf("%w: URL %s: only http and https URLs are matched", ErrMalformedSignal, quote(raw))
	default:
		s = "http://" + strings.TrimPrefix(s, "//")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: URL %s: %v", ErrMalformedSignal, quote(raw), err)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" || strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
		return "", fmt.Errorf("%w: URL %s has no host", ErrMalformedSignal, quote(raw))
	}
	if h, err := idna.Lookup.ToASCII(host); err == nil {
		host = h
	} else if !isASCII(host) {
		return "", fmt.Errorf("%w: URL %s: host %s: %v", ErrMalformedSignal, quote(raw), quote(host), err)
	}
	host = strings.TrimPrefix(host, "www.")
	if host == "" || strings.HasPrefix(host, ".") {
		return "", fmt.Errorf("%w: URL %s has no host", ErrMalformedSignal, quote(raw))
	}
	if isIPv6(host) {
		host = "[" + host + "]"
	}
	var b strings.Builder
	b.WriteString(host)
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n > 65535 {
			return "", fmt.Errorf("%w: URL %s: port %s", ErrMalformedSignal, quote(raw), quote(p))
		}
		if n != 80 && n != 443 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(n))
		}
	}
	b.WriteString(normalizePath(u.EscapedPath()))
	if q := normalizeQuery(u.RawQuery); q != "" {
		b.WriteByte('?')
		b.WriteString(q)
	}
	return b.String(), nil
}

// hasOtherScheme reports whether s starts with a scheme and ':' but not
// "//" (mailto:, javascript:, data:), as opposed to a host and port
// (example.com:8080/x).
func hasOtherScheme(s string) bool {
	i := strings.IndexByte(s, ':')
	if i <= 0 {
		return false
	}
	for j, c := range s[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	rest := s[i+1:]
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return true
		}
	}
	return rest == "" && !strings.HasPrefix(s[i+1:], "/")
}

func isIPv6(h string) bool { return strings.Contains(h, ":") }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// refang undoes the usual ways of making a URL unclickable.
func refang(s string) string {
	lower := strings.ToLower(s)
	for _, p := range []struct{ from, to string }{{"hxxps://", "https://"}, {"hxxp://", "http://"}, {"[h]ttps://", "https://"}, {"[h]ttp://", "http://"}} {
		if strings.HasPrefix(lower, p.from) {
			s = p.to + s[len(p.from):]
			break
		}
	}
	return strings.NewReplacer("[.]", ".", "(.)", ".", "[dot]", ".").Replace(s)
}

// normalizePath resolves dot segments, unescapes unreserved characters,
// upper-cases the remaining escapes and drops a trailing slash (the root
// path is empty).
func normalizePath(p string) string {
	if p == "" || p == "/" {
		return ""
	}
	p = path.Clean("/" + p)
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(v) {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(p[i+1 : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	s := strings.TrimSuffix(b.String(), "/")
	return s
}

// trackingParams are query parameters that say how a link was shared,
// not what it points to.
var trackingParams = map[string]bool{"fbclid": true, "gclid": true, "dclid": true, "msclkid": true, "mc_eid": true, "igshid": true}

func normalizeQuery(q string) string {
	if q == "" {
		return ""
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		// Keep a query that does not parse as it is: it is still part
		// of what the URL names.
		return q
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "utm_") || trackingParams[lk] {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		vs := slices.Clone(vals[k])
		slices.Sort(vs)
		for _, v := range vs {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			if v != "" {
				b.WriteByte('=')
				b.WriteString(url.QueryEscape(v))
			}
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// urlFinder finds URLs in free text, with or without a scheme
// ("example.com/x" too, for hosts under a known top-level domain).
var urlFinder = xurls.Relaxed()

// MaxURLsPerText bounds the URLs ExtractURLs returns.
const MaxURLsPerText = 64

// ExtractURLs returns the normalised URLs (NormalizeURL) found in a post's
// text, each once, in order of appearance, at most MaxURLsPerText; what
// does not normalise (another scheme, an e-mail address) is skipped.
func ExtractURLs(text string) []string {
	if !mayHoldURL(text) {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range urlFinder.FindAllString(text, -1) {
		if strings.Contains(m, "@") && !strings.Contains(m, "/") {
			continue // an e-mail address
		}
		u, err := NormalizeURL(m)
		if err != nil || seen[u] {
			continue
		}
		seen[u] = true
		out = append(out, u)
		if len(out) == MaxURLsPerText {
			break
		}
	}
	return out
}

// mayHoldURL reports whether urlFinder can match in text: each of its
// forms holds a colon (a scheme, an IPv6 address) or a dot between two
// letters or digits (a host name before its top-level domain, an IPv4
// address, an e-mail's domain). Many posts hold neither, and the check is
// far cheaper than the regular expression.
func mayHoldURL(text string) bool {
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case ':':
			return true
		case '.':
			if i == 0 || i+1 == len(text) {
				continue
			}
			a, _ := utf8.DecodeLastRuneInString(text[:i])
			b, _ := utf8.DecodeRuneInString(text[i+1:])
			if urlRune(a) && urlRune(b) {
				return true
			}
		}
	}
	return false
}

// urlRune reports whether r may sit beside the dots of a host name
// (xurls: letters, marks and numbers).
func urlRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r) }

// validToken reports whether s is a non-empty token of at most max bytes
// without white space or control characters (labels and tags).
func validToken(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' {
			return false
		}
	}
	return true
}
