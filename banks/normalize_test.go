package banks

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Hello World", "hello world"},
		{"  HELLO\t\n  world  ", "hello world"},
		{"Straße", "strasse"},
		{"café CAFÉ cafe\u0301", "cafe cafe cafe"},
		{"ｆｕｌｌｗｉｄｔｈ", "fullwidth"},
		{"𝐁𝐨𝐥𝐝 text", "bold text"},
		{"ﬁne", "fine"},
		{"zero\u200bwidth\u200d joiner", "zerowidth joiner"},
		{"Buy now!!! Limited offer...", "buy now limited offer"},
		{"b.u.y", "b u y"},
		{"İstanbul", "istanbul"},
		{"emoji 🔥 kept", "emoji 🔥 kept"},
		{"x²", "x2"},
		{"Ⅻ", "xii"},
		{"soft\u00adhyphen", "softhyphen"},
		{"bidi\u202eoverride", "bidioverride"},
		{"\x00\x01ctrl", "ctrl"},
		{"bad \xff utf8", "bad \ufffd utf8"},
		{"...", ""},
		{"", ""},
		{"数字 123", "数字 123"},
	} {
		got := NormalizeText(tc.in)
		if got != tc.want {
			t.Errorf("NormalizeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := NormalizeText(got); again != got {
			t.Errorf("not idempotent on %q: %q then %q", tc.in, got, again)
		}
	}
}

func TestNormalizeURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://Example.COM/", "example.com"},
		{"http://example.com", "example.com"},
		{"example.com/path/", "example.com/path"},
		{"www.example.com/a", "example.com/a"},
		{"HTTPS://WWW.Example.com:443/A/B?b=2&a=1#frag", "example.com/A/B?a=1&b=2"},
		{"http://example.com:8080/x", "example.com:8080/x"},
		{"http://example.com:080/x", "example.com/x"},
		{"http://user:pass@evil.example/x", "evil.example/x"},
		{"http://google.com@evil.example/", "evil.example"},
		{"https://example.com/a/./b/../c", "example.com/a/c"},
		{"https://example.com/%7Euser/%2f", "example.com/~user/%2F"},
		{"https://example.com/?utm_source=x&id=5&fbclid=abc", "example.com?id=5"},
		{"hxxps://evil[.]example/payload", "evil.example/payload"},
		{"[h]ttp://evil(.)example", "evil.example"},
		{"https://bücher.example/", "xn--bcher-kva.example"},
		{"https://example.com./x", "example.com/x"},
		{"http://[::1]:8080/x", "[::1]:8080/x"},
		{"//example.com/x", "example.com/x"},
		{"https://my_host.example.com/x", "my_host.example.com/x"},
		{"https://example.com/search?q=a+b", "example.com/search?q=a+b"},
	} {
		got, err := NormalizeURL(tc.in)
		if err != nil {
			t.Errorf("NormalizeURL(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("NormalizeURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again, err := NormalizeURL(got); err != nil || again != got {
			t.Errorf("not idempotent on %q: %q then %q (%v)", tc.in, got, again, err)
		}
	}
	for _, bad := range []string{"", "   ", "ftp://example.com/x", "mailto:a@b.c", "http://", "https://:80/x", "http://example.com:99999/", "javascript://alert(1)"} {
		if got, err := NormalizeURL(bad); !errors.Is(err, ErrMalformedSignal) {
			t.Errorf("NormalizeURL(%q) = %q, %v; want ErrMalformedSignal", bad, got, err)
		}
	}
}

func TestExtractURLs(t *testing.T) {
	text := "Buy at https://Shop.example.com/deal?utm_source=tw and www.other.example, not me@mail.example. " +
		"Again: http://shop.example.com/deal. Also evil.com/x and hxxp://defanged[.]example (refanged)."
	got := ExtractURLs(text)
	want := []string{"shop.example.com/deal", "other.example", "evil.com/x", "defanged.example"}
	if !slices.Equal(got, want) {
		t.Fatalf("ExtractURLs = %q, want %q", got, want)
	}
	if got := ExtractURLs("no links here"); got != nil {
		t.Fatalf("no links: %q", got)
	}
	many := strings.Repeat("https://a.example/x ", 10) + strings.Repeat("x", 10)
	for i := range 100 {
		many += " https://example.com/" + strings.Repeat("p", i+1)
	}
	if n := len(ExtractURLs(many)); n != MaxURLsPerText {
		t.Fatalf("%d URLs, want the cap %d", n, MaxURLsPerText)
	}
}

func FuzzNormalizeText(f *testing.F) {
	for _, s := range []string{"Hello, World!", "İ", "ﬁ", "\u0301a", "Ⅻ", "\xff\xfe", "𝐀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeText(s)
		if !utf8.ValidString(n) {
			t.Fatalf("invalid UTF-8 from %q", s)
		}
		if NormalizeText(n) != n {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, n, NormalizeText(n))
		}
		if strings.HasPrefix(n, " ") || strings.HasSuffix(n, " ") || strings.Contains(n, "  ") {
			t.Fatalf("spaces not collapsed: %q", n)
		}
	})
}

func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{"https://Example.com/a?b=1", "hxxp://x[.]y/z", "example.com", "http://[::1]/", "https://a.b/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeURL(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedSignal) && !errors.Is(err, ErrSignalTooLong) {
				t.Fatalf("untyped error for %q: %v", s, err)
			}
			return
		}
		again, err := NormalizeURL(n)
		if err != nil || again != n {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", s, n, again, err)
		}
	})
}

// mayHoldURL is true for every text in which the URL finder matches
// anything (it only lets ExtractURLs skip the regular expression), and
// false for plain prose: random texts over an alphabet of the characters
// URLs are made of, and known forms.
func TestMayHoldURL(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 8))
	alphabet := []string{"a", "z", "Q", "0", "7", "é", "ж", "\u0301", "٣", ".", ".", ":", "/", "@", " ", " ", "-", "_", "[", "]", "com", "org", "io", "xn--p1ai", "рф", "http", "mailto", "www", "::1", "10", "255", "\n", ",", "。"}
	matched := 0
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		text := b.String()
		if urlFinder.MatchString(text) {
			matched++
			if !mayHoldURL(text) {
				t.Fatalf("%q: the URL finder matches %q, but mayHoldURL is false", text, urlFinder.FindString(text))
			}
		}
	}
	for _, text := range []string{"see example.com", "1.2.3.4", "mail me: x@y.org", "[::1]:80", "fe80::1", "https://a", "пример.рф", "a.b", "mailto:x"} {
		if !mayHoldURL(text) {
			t.Errorf("mayHoldURL(%q) = false", text)
		}
	}
	for _, text := range []string{"no links here", "The end. Then more.", "a . b", "...", "ends with a dot."} {
		if mayHoldURL(text) {
			t.Errorf("mayHoldURL(%q) = true", text)
		}
	}
	if matched < 500 {
		t.Fatalf("only %d random texts held a URL: the test shows too little", matched)
	}
	t.Logf("%d of 20000 random texts held a URL", matched)
}
