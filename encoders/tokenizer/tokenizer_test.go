package tokenizer

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

type golden struct {
	Cat    string `json:"cat"`
	Text   string `json:"text"`
	RawB64 string `json:"raw_b64"`
	IDs    []int  `json:"ids"`
}

const goldenPath = "../../testdata/tokenizer/goldens.jsonl"

func loadGoldens(tb testing.TB) []golden { return loadGoldenFile(tb, goldenPath) }

func loadGoldenFile(tb testing.TB, path string) []golden {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("open goldens (regenerate with tools/gen_tokenizer_goldens.py): %v", err)
	}
	defer f.Close()
	var out []golden
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var g golden
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			tb.Fatalf("goldens line %d: %v", len(out)+1, err)
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

var (
	sharedOnce sync.Once
	sharedTok  *Tokenizer
	sharedErr  error
)

func newTok(tb testing.TB) *Tokenizer {
	tb.Helper()
	sharedOnce.Do(func() { sharedTok, sharedErr = New() })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return sharedTok
}

func TestGoldens(t *testing.T) {
	gs := loadGoldens(t)
	if len(gs) < 900 {
		t.Fatalf("only %d goldens", len(gs))
	}
	checkGoldens(t, gs)
}

// TestExtraGoldens checks further golden files in the same format, named by
// XMODAL_TOKENIZER_GOLDENS (colon-separated), e.g. larger stress corpora.
func TestExtraGoldens(t *testing.T) {
	paths := os.Getenv("XMODAL_TOKENIZER_GOLDENS")
	if paths == "" {
		t.Skip("XMODAL_TOKENIZER_GOLDENS not set")
	}
	for _, p := range strings.Split(paths, ":") {
		t.Run(filepath.Base(p), func(t *testing.T) { checkGoldens(t, loadGoldenFile(t, p)) })
	}
}

func checkGoldens(t *testing.T, gs []golden) {
	tok := newTok(t)
	mismatches := 0
	perCat := map[string][2]int{}
	var diffs []string
	for i, g := range gs {
		in := g.Text
		if g.RawB64 != "" {
			raw, err := base64.StdEncoding.DecodeString(g.RawB64)
			if err != nil {
				t.Fatal(err)
			}
			in = string(raw)
		}
		got := tok.Encode(in)
		c := perCat[g.Cat]
		c[1]++
		if !reflect.DeepEqual(got, g.IDs) {
			mismatches++
			if len(diffs) < 8 {
				diffs = append(diffs, fmt.Sprintf("#%d [%s] %+q\n   cleaned %+q\n   want %v\n   got  %v", i, g.Cat, trunc(in, 200), trunc(Clean(in), 200), g.IDs, got))
			}
		} else {
			c[0]++
		}
		perCat[g.Cat] = c
	}
	for cat, c := range perCat {
		t.Logf("%-10s %d/%d match", cat, c[0], c[1])
	}
	t.Logf("total: %d/%d match", len(gs)-mismatches, len(gs))
	if mismatches > 0 {
		t.Errorf("%d of %d goldens differ; first ones:\n%s", mismatches, len(gs), strings.Join(diffs, "\n"))
	}
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func TestEncodeTable(t *testing.T) {
	tok := newTok(t)
	long := strings.Repeat("word ", 200)
	cases := []struct {
		name  string
		text  string
		ctx   int
		check func(t *testing.T, ids []int)
	}{
		{"empty", "", 77, func(t *testing.T, ids []int) { want(t, ids, []int{SOT, EOT}) }},
		{"only whitespace", " \t\n\u3000", 77, func(t *testing.T, ids []int) { want(t, ids, []int{SOT, EOT}) }},
		{"truncation keeps EOT", long, 77, func(t *testing.T, ids []int) {
			if len(ids) != 77 || ids[0] != SOT || ids[76] != EOT {
				t.Fatalf("len %d first %d last %d", len(ids), ids[0], ids[len(ids)-1])
			}
		}},
		{"exactly full", strings.Repeat("word ", 75), 77, func(t *testing.T, ids []int) {
			if len(ids) != 77 || ids[76] != EOT || ids[75] == EOT {
				t.Fatalf("bad: len %d %v", len(ids), ids[70:])
			}
		}},
		{"small context", long, 5, func(t *testing.T, ids []int) {
			if len(ids) != 5 || ids[0] != SOT || ids[4] != EOT {
				t.Fatalf("%v", ids)
			}
		}},
		{"context 1", "hello", 1, func(t *testing.T, ids []int) { want(t, ids, []int{EOT}) }},
		{"context 2", "hello", 2, func(t *testing.T, ids []int) { want(t, ids, []int{SOT, EOT}) }},
		{"context 0 means default", long, 0, func(t *testing.T, ids []int) {
			if len(ids) != DefaultContext {
				t.Fatalf("len %d", len(ids))
			}
		}},
		{"invalid utf8", "caf\xe9 \xff\xfe", 77, func(t *testing.T, ids []int) {
			want(t, ids, tok.Encode("caf\uFFFD \uFFFD\uFFFD"))
		}},
		{"truncated sequence is one replacement", "a\xe2\x82b", 77, func(t *testing.T, ids []int) {
			want(t, ids, tok.Encode("a\uFFFDb"))
		}},
		{"special token text", "<start_of_text>", 77, func(t *testing.T, ids []int) { want(t, ids, []int{SOT, SOT, EOT}) }},
		{"hello world", "Hello, World!", 77, func(t *testing.T, ids []int) {
			want(t, ids, []int{SOT, 3306, 267, 1002, 256, EOT})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, tok.EncodeContext(c.text, c.ctx)) })
	}
}

func want(t *testing.T, got, want []int) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestBatch(t *testing.T) {
	tok := newTok(t)
	texts := []string{"a photo of a cat", "", strings.Repeat("dog ", 100)}
	const ctx = 16
	ids, mask := tok.Batch(texts, ctx)
	if len(ids) != len(texts)*ctx || len(mask) != len(ids) {
		t.Fatalf("sizes %d %d", len(ids), len(mask))
	}
	for i, text := range texts {
		row := tok.EncodeContext(text, ctx)
		for j := 0; j < ctx; j++ {
			var wantID, wantMask int64
			if j < len(row) {
				wantID, wantMask = int64(row[j]), 1
			}
			if ids[i*ctx+j] != wantID || mask[i*ctx+j] != wantMask {
				t.Fatalf("row %d col %d: id %d mask %d, want %d %d", i, j, ids[i*ctx+j], mask[i*ctx+j], wantID, wantMask)
			}
		}
	}
	if ids[2*ctx+ctx-1] != EOT {
		t.Fatalf("truncated row must end with EOT")
	}
	if ids, mask := tok.Batch(nil, ctx); len(ids) != 0 || len(mask) != 0 {
		t.Fatal("empty batch")
	}
}

func TestConcurrent(t *testing.T) {
	tok := newTok(t)
	gs := loadGoldens(t)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(gs); i += 3 {
				if gs[i].RawB64 != "" {
					continue
				}
				if got := tok.Encode(gs[i].Text); !reflect.DeepEqual(got, gs[i].IDs) {
					select {
					case errs <- fmt.Sprintf("golden %d differs under concurrency", i):
					default:
					}
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestNewFromFile(t *testing.T) {
	dir := t.TempDir()
	gz := filepath.Join(dir, "vocab.txt.gz")
	if err := os.WriteFile(gz, defaultVocab, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := NewFromFile(gz)
	if err != nil {
		t.Fatal(err)
	}
	if a.VocabSize() != 49408 {
		t.Fatalf("vocab size %d", a.VocabSize())
	}
	if _, err := NewFromFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("want error for a missing file")
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("header only\n"), 0o644)
	if _, err := NewFromFile(bad); err == nil {
		t.Fatal("want error for a file without merges")
	}
	// Plain-text file: a tiny vocabulary with one merge, "h" + "i</w>" (id 512).
	// As in the reference, the empty line after it is also a vocabulary entry
	// (513), so SOT and EOT become 514 and 515.
	plain := filepath.Join(dir, "plain.txt")
	os.WriteFile(plain, []byte("#version\nh i</w>\n"), 0o644)
	p, err := NewFromFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	want(t, p.Encode("hi"), []int{514, 512, 515})
	want(t, p.Encode("ih"), []int{514, int(p.byteID['i']), int(p.byteEndID['h']), 515})
}

// TestBPEHeapMatchesSimple checks the O(n log n) BPE against the direct one.
func TestBPEHeapMatchesSimple(t *testing.T) {
	tok := newTok(t)
	rng := rand.New(rand.NewSource(1))
	alphabets := []string{"ab", "abc", "aeiou", "thequickbrownfox", "ha", "😂a", "東京"}
	for n := 0; n < 3000; n++ {
		al := []rune(alphabets[n%len(alphabets)])
		var sb strings.Builder
		for k := rng.Intn(200) + 1; k > 0; k-- {
			sb.WriteRune(al[rng.Intn(len(al))])
		}
		s := sb.String()
		mk := func() []int32 {
			w := make([]int32, len(s))
			for i := 0; i < len(s); i++ {
				if i == len(s)-1 {
					w[i] = tok.byteEndID[s[i]]
				} else {
					w[i] = tok.byteID[s[i]]
				}
			}
			return w
		}
		a := tok.bpeSimple(mk())
		b := tok.bpeHeap(mk())
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%q: simple %v heap %v", s, a, b)
		}
	}
}

func TestNFCTablesFastPath(t *testing.T) {
	for r := rune(0); r < nfcFastBelow; r++ {
		if cccMap[r] != 0 || inRanges(r, nfcQCNoRanges) || inRanges(r, nfcQCMaybeRanges) {
			t.Fatalf("U+%04X breaks the NFC fast path", r)
		}
		if _, ok := decompMap[r]; ok && inRanges(r, nfcQCNoRanges) {
			t.Fatalf("U+%04X", r)
		}
		if _, ok := decompMap[r]; ok && r < 0xC0 {
			t.Fatalf("U+%04X decomposes but nfc copies characters below U+00C0 as they are", r)
		}
	}
}

// TestNFCComposite: a precomposed letter followed by a combining mark must
// normalise like its decomposed form (Python's unicodedata.normalize("NFC")
// gives the expected values). Vietnamese typed with a composite keyboard
// layout or decoded from Windows-1258 carries a base letter from Latin-1 or
// Latin Extended (ê, ô, ơ, ư, ă) followed by a tone mark; Yoruba writes a
// dot below under an accented vowel.
func TestNFCComposite(t *testing.T) {
	cases := []struct{ in, want string }{
		{"\u00ea\u0323", "\u1ec7"},       // ê + dot below = ệ (Vietnamese)
		{"\u00ca\u0323", "\u1ec6"},       // Ê + dot below = Ệ
		{"\u00f4\u0323", "\u1ed9"},       // ô + dot below = ộ
		{"\u00e2\u0323", "\u1ead"},       // â + dot below = ậ
		{"\u0103\u0323", "\u1eb7"},       // ă + dot below = ặ
		{"\u0103\u0309", "\u1eb3"},       // ă + hook above = ẳ
		{"\u01a1\u0323", "\u1ee3"},       // ơ + dot below = ợ
		{"\u01b0\u0300", "\u1eeb"},       // ư + grave = ừ
		{"\u00e9\u0323", "\u1eb9\u0301"}, // é + dot below = ẹ́ (Yoruba)
		{"\u00f2\u0323", "\u1ecd\u0300"}, // ò + dot below = ọ̀ (Yoruba)
		{"\u00f1\u0323", "\u1e47\u0303"}, // ñ + dot below
		{"\u00c5\u0327", "\u00c5\u0327"}, // Å + cedilla: no composite
		{"\u00e0\u0304", "\u00e0\u0304"}, // à + macron: blocked
		{"Vi\u00ea\u0323t Nam", "Vi\u1ec7t Nam"},
		{"e\u0302\u0323", "\u1ec7"}, // fully decomposed, marks out of order
		{"e\u0323\u0302", "\u1ec7"},
	}
	for _, c := range cases {
		if got := nfc(c.in); got != c.want {
			t.Errorf("nfc(%+q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

// TestNFCCanonicalEquivalence: NFC gives the same result for canonically
// equivalent texts. For every character with a decomposition (all of them,
// not only those below nfcFastBelow) followed by every combining mark, the
// precomposed and the decomposed spelling must normalise alike.
func TestNFCCanonicalEquivalence(t *testing.T) {
	marks := make([]rune, 0, len(cccMap))
	for m := range cccMap {
		marks = append(marks, m)
	}
	slices.Sort(marks)
	bases := make([]rune, 0, len(decompMap))
	for r := range decompMap {
		bases = append(bases, r)
	}
	slices.Sort(bases)
	if testing.Short() { // every 7th base: still covers Latin-1 and Latin Extended
		var some []rune
		for i := 0; i < len(bases); i += 7 {
			some = append(some, bases[i])
		}
		bases = some
	}
	fails := 0
	for _, r := range bases {
		for _, m := range marks {
			pre := string(r) + string(m)
			dec := decompMap[r] + string(m)
			if a, b := nfc(pre), nfc(dec); a != b {
				if fails++; fails <= 10 {
					t.Errorf("nfc(%+q) = %+q but nfc(%+q) = %+q", pre, a, dec, b)
				}
			}
		}
	}
	if fails > 10 {
		t.Errorf("... %d mismatches in all", fails)
	}
}

func TestSanitizeUTF8(t *testing.T) {
	cases := map[string]string{
		"ok":                   "ok",
		"\xff":                 "\uFFFD",
		"\xe2\x82":             "\uFFFD",
		"\xe2\x82x":            "\uFFFDx",
		"\xed\xa0\x80":         "\uFFFD\uFFFD\uFFFD",
		"\xf0\x9f\x98":         "\uFFFD",
		"\xc0\x80":             "\uFFFD\uFFFD",
		"\xf4\x90\x80\x80":     "\uFFFD\uFFFD\uFFFD\uFFFD",
		"a\uFFFDb":             "a\uFFFDb",
		"\xf8\x88\x80\x80\x80": "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD",
	}
	for in, wantS := range cases {
		if got := sanitizeUTF8(in); got != wantS {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, wantS)
		}
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "hello world", "caf\xe9", "&amp;lt;", "Ã©tÃ©", "<start_of_text>", "\xed\xa0\xbd\xed\xb8\x8d",
		"ΣΑΣ", "ﬁ", "\x1b[31m", "a\r\nb", strings.Repeat("ab", 100)} {
		f.Add(s)
	}
	tok, err := New()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		if len(ids) < 2 || len(ids) > DefaultContext {
			t.Fatalf("len %d", len(ids))
		}
		if ids[0] != SOT || ids[len(ids)-1] != EOT {
			t.Fatalf("bad ends %v", ids)
		}
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("id %d out of range", id)
			}
		}
	})
}

// BenchmarkEncode encodes the whole goldens corpus per op, with a warm BPE
// cache (tools/bench_tokenizer_peer.py compares it with open_clip's).
func BenchmarkEncode(b *testing.B) {
	tok := newTok(b)
	gs := loadGoldens(b)
	texts := make([]string, len(gs))
	for i, g := range gs {
		texts[i] = g.Text
		tok.Encode(g.Text) // warm the BPE cache: every timed pass sees the same state
	}
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for _, s := range texts {
			tok.Encode(s)
		}
		n += len(texts)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "texts/s")
}

// TestIsBadWindowed checks the windowed badness test against running the
// whole pattern over the whole text.
func TestIsBadWindowed(t *testing.T) {
	var cands []rune
	for i := 0; i < len(badnessCandidateRanges); i += 2 {
		for r := badnessCandidateRanges[i]; r <= badnessCandidateRanges[i+1]; r++ {
			cands = append(cands, r)
		}
	}
	badnessRE := regexp.MustCompile(badnessPattern)
	other := []rune("abcxyzAZ .,!?'\n\t東😀ÃÂ€ВГ\u00a0\u3000_9٣")
	rng := rand.New(rand.NewSource(7))
	check := func(s string) {
		if got, want := isBad(s), badnessRE.MatchString(s); got != want {
			t.Fatalf("isBad(%+q) = %v, full pattern says %v", s, got, want)
		}
	}
	for n := 0; n < 200000; n++ {
		var sb strings.Builder
		for k := rng.Intn(40); k > 0; k-- {
			if rng.Intn(4) == 0 {
				sb.WriteRune(cands[rng.Intn(len(cands))])
			} else {
				sb.WriteRune(other[rng.Intn(len(other))])
			}
		}
		check(sb.String())
	}
	for _, g := range loadGoldens(t) {
		check(g.Text)
	}
}

// BenchmarkEncodeCategory reports throughput per golden category.
func BenchmarkEncodeCategory(b *testing.B) {
	tok := newTok(b)
	byCat := map[string][]string{}
	var cats []string
	for _, g := range loadGoldens(b) {
		if _, ok := byCat[g.Cat]; !ok {
			cats = append(cats, g.Cat)
		}
		byCat[g.Cat] = append(byCat[g.Cat], g.Text)
	}
	for _, cat := range cats {
		texts := byCat[cat]
		b.Run(cat, func(b *testing.B) {
			n := 0
			for i := 0; i < b.N; i++ {
				for _, s := range texts {
					tok.Encode(s)
				}
				n += len(texts)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "texts/s")
		})
	}
}

// TestUTF8DetectorNext checks the position-by-position detector search
// against the regexp run unanchored with the lookbehind checked afterwards.
func TestUTF8DetectorNext(t *testing.T) {
	re := regexp.MustCompile(utf8DetectorPattern)
	ref := func(text string, pos int) (int, int, bool) {
		for pos <= len(text) {
			loc := re.FindStringIndex(text[pos:])
			if loc == nil {
				return 0, 0, false
			}
			s, e := pos+loc[0], pos+loc[1]
			if s > 0 {
				r, _ := utf8.DecodeLastRuneInString(text[:s])
				if inRanges(r, utf8StrictContinuationRanges) {
					_, sz := utf8.DecodeRuneInString(text[s:])
					pos = s + sz
					continue
				}
			}
			return s, e, true
		}
		return 0, 0, false
	}
	alphabet := []rune("ÃÂâ€œ©®°±²³´µ¶·¸¹º»¼½¾¿ðŸ˜€ÐРСВГÎ \u00a0abc.,\n東é")
	for r := rune(0x80); r <= 0xBF; r++ {
		alphabet = append(alphabet, r)
	}
	rng := rand.New(rand.NewSource(3))
	for n := 0; n < 100000; n++ {
		var sb strings.Builder
		for k := rng.Intn(30); k > 0; k-- {
			sb.WriteRune(alphabet[rng.Intn(len(alphabet))])
		}
		s := sb.String()
		for pos := 0; pos <= len(s); {
			a0, a1, aok := utf8DetectorNext(s, pos)
			b0, b1, bok := ref(s, pos)
			if aok != bok || a0 != b0 || a1 != b1 {
				t.Fatalf("%+q from %d: got %d,%d,%v want %d,%d,%v", s, pos, a0, a1, aok, b0, b1, bok)
			}
			if !aok {
				break
			}
			pos = a1
		}
	}
}

// TestPathologicalInputs guards against super-linear behaviour on long
// adversarial inputs (each took tens of seconds before being fixed).
func TestPathologicalInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	tok := newTok(t)
	const n = 100000
	cases := map[string]string{
		"one long word":          strings.Repeat("a", n),
		"alternating marks":      "a" + strings.Repeat("\u0301\u0316", n/2),
		"failing lookbehind":     strings.Repeat("©Ã", n/2) + "東",
		"mojibake run":           strings.Repeat("Ã©", n/2),
		"cp1251 mojibake":        strings.Repeat("РџСЂРёРІРµС‚", n/16),
		"entities":               strings.Repeat("&amp;&#x41;&", n/12),
		"terminal escapes":       strings.Repeat("\x1b[1;", n/4),
		"sigma and ignorables":   strings.Repeat("Σ'''", n/4),
		"random alnum word":      strings.Repeat("x7Qz9kLp", n/8),
		"many lines of mojibake": strings.Repeat("Ã© x\n", n/5),
	}
	for name, s := range cases {
		start := time.Now()
		ids := tok.Encode(s)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: %v for %d bytes", name, d, len(s))
		}
		if len(ids) < 2 || ids[0] != SOT || ids[len(ids)-1] != EOT {
			t.Errorf("%s: bad ids", name)
		}
	}
}
