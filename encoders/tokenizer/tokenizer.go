// Package tokenizer is a bit-exact Go port of open_clip's CLIP BPE tokenizer
// (open_clip_torch 3.2.0, SimpleTokenizer with clean="lower"), the tokenizer
// CLIP-style text towers expect.
//
// A text goes through the same steps as in the reference:
//
//  1. ftfy.fix_text with ftfy 6.3.1's default configuration (HTML entity
//     decoding outside markup, mojibake repair incl. the sloppy Windows codecs
//     and CESU-8, C1 controls, Latin ligatures, full/half-width forms, curly
//     quotes, line breaks, terminal escapes, control characters, NFC);
//  2. html.unescape applied twice (HTML5 rules: legacy entities without ';',
//     longest-prefix matching, numeric references with Windows-1252 remapping);
//  3. whitespace collapsed with Python's str.split() and the text lower-cased
//     with Python's str.lower() (full mappings, final sigma);
//  4. the pre-tokenizer pattern
//     <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     (regex module, IGNORECASE);
//  5. byte-level BPE over bpe_simple_vocab_16e6.txt.gz (embedded);
//  6. SOT (49406) + tokens + EOT (49407), truncated to the context length with
//     EOT kept as the last token.
//
// All Unicode data (case mapping, whitespace, letter/number classes,
// normalisation) is generated from the reference Python environment by
// gen_tables.py, so results do not depend on the Go release's Unicode version.
//
// Invalid UTF-8 is defined behaviour: each maximal ill-formed byte subsequence
// is replaced by U+FFFD before processing, exactly as Python's
// bytes.decode("utf-8", errors="replace") does.
//
// A Tokenizer is safe for concurrent use.
package tokenizer

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Special token ids of the default vocabulary.
const (
	SOT = 49406
	EOT = 49407
)

// DefaultContext is the context length of OpenAI CLIP text towers.
const DefaultContext = 77

//go:generate ../../.cache/venv/bin/python gen_tables.py

//go:embed bpe_simple_vocab_16e6.txt.gz
var defaultVocab []byte

// Tokenizer encodes text to CLIP token ids.
type Tokenizer struct {
	byteID    [256]int32 // id of the byte's symbol
	byteEndID [256]int32 // id of the byte's symbol + "</w>"
	merges    map[uint64]merge
	sot, eot  int32
	vocabSize int
	cache     *bpeCache
}

// New returns a tokenizer using the embedded bpe_simple_vocab_16e6 vocabulary.
func New() (*Tokenizer, error) {
	return newFromBytes(defaultVocab)
}

// NewFromFile loads a bpe_simple_vocab_16e6.txt.gz style merges file,
// gzip-compressed or plain text.
func NewFromFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return newFromBytes(data)
}

func newFromBytes(data []byte) (*Tokenizer, error) {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: vocabulary: %w", err)
		}
		data, err = io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: vocabulary: %w", err)
		}
	}
	return build(string(data))
}

// bytesToUnicode is open_clip's bytes_to_unicode, as an ordered list of (byte, char).
func bytesToUnicode() (order [256]byte, chars [256]string) {
	n := 0
	inBS := [256]bool{}
	add := func(lo, hi int) {
		for b := lo; b <= hi; b++ {
			order[n] = byte(b)
			chars[b] = string(rune(b))
			inBS[b] = true
			n++
		}
	}
	add('!', '~')
	add(0xA1, 0xAC)
	add(0xAE, 0xFF)
	extra := 0
	for b := 0; b < 256; b++ {
		if !inBS[b] {
			order[n] = byte(b)
			chars[b] = string(rune(256 + extra))
			extra++
			n++
		}
	}
	return order, chars
}

func build(text string) (*Tokenizer, error) {
	if !utfValid(text) {
		return nil, errors.New("tokenizer: vocabulary is not valid UTF-8")
	}
	lines := strings.Split(text, "\n")
	// merges = lines[1 : 49152-256-2+1]
	hi := 49152 - 256 - 2 + 1
	if hi > len(lines) {
		hi = len(lines)
	}
	var mergeLines [][]string
	if hi > 1 {
		for _, l := range lines[1:hi] {
			mergeLines = append(mergeLines, strings.Fields(l))
		}
	}
	order, chars := bytesToUnicode()
	vocab := make([]string, 0, 512+len(mergeLines)+2)
	for _, b := range order {
		vocab = append(vocab, chars[b])
	}
	for _, b := range order {
		vocab = append(vocab, chars[b]+"</w>")
	}
	for _, m := range mergeLines {
		vocab = append(vocab, strings.Join(m, ""))
	}
	vocab = append(vocab, "<start_of_text>", "<end_of_text>")
	encoder := make(map[string]int32, len(vocab))
	for i, v := range vocab {
		encoder[v] = int32(i) // later duplicates win, as in dict(zip(...))
	}
	t := &Tokenizer{
		merges:    make(map[uint64]merge, len(mergeLines)),
		sot:       encoder["<start_of_text>"],
		eot:       encoder["<end_of_text>"],
		vocabSize: len(encoder),
		cache:     &bpeCache{},
	}
	for b := 0; b < 256; b++ {
		t.byteID[b] = encoder[chars[b]]
		t.byteEndID[b] = encoder[chars[b]+"</w>"]
	}
	for rank, m := range mergeLines {
		if len(m) != 2 {
			continue // can never match a pair
		}
		a, okA := encoder[m[0]]
		b, okB := encoder[m[1]]
		if !okA || !okB {
			continue // symbols that can never occur in a word
		}
		t.merges[pairKey(a, b)] = merge{rank: int32(rank), id: encoder[m[0]+m[1]]}
	}
	if len(t.merges) == 0 {
		return nil, errors.New("tokenizer: vocabulary holds no merges")
	}
	return t, nil
}

func utfValid(s string) bool { return sanitizeUTF8(s) == s }

// VocabSize is the number of distinct vocabulary entries (49408 for the default).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// Clean returns the text exactly as the reference hands it to the
// pre-tokenizer (ftfy, double html.unescape, whitespace collapse, lower case).
func Clean(text string) string {
	s := sanitizeUTF8(text)
	s = fixText(s)
	s = htmlUnescape(htmlUnescape(s))
	s = pyWhitespaceClean(s)
	return pyLower(s)
}

// Encode returns SOT, the text's tokens and EOT, truncated to DefaultContext
// ids with EOT kept last. It is not padded.
func (t *Tokenizer) Encode(text string) []int {
	return t.EncodeContext(text, DefaultContext)
}

// EncodeContext is Encode with a given context length; contextLen <= 0 means
// DefaultContext (as open_clip treats a missing/zero context length).
func (t *Tokenizer) EncodeContext(text string, contextLen int) []int {
	if contextLen <= 0 {
		contextLen = DefaultContext
	}
	// Only the first contextLen-2 text tokens can survive truncation.
	limit := contextLen - 2
	if limit < 0 {
		limit = 0
	}
	ids := make([]int, 0, min(contextLen, 80))
	ids = append(ids, int(t.sot))
	ids = t.appendTokens(ids, Clean(text), limit)
	ids = append(ids, int(t.eot))
	if len(ids) > contextLen {
		ids = ids[:contextLen]
		ids[contextLen-1] = int(t.eot)
	}
	return ids
}

// appendTokens appends up to limit BPE ids of the cleaned text to dst.
func (t *Tokenizer) appendTokens(dst []int, cleaned string, limit int) []int {
	start := len(dst)
	if limit == 0 {
		return dst
	}
	var word []int32
	pretokenize(cleaned, func(tok string) bool {
		switch tok {
		case "<start_of_text>":
			dst = append(dst, int(t.sot))
		case "<end_of_text>":
			dst = append(dst, int(t.eot))
		default:
			ids, ok := t.cache.get(tok)
			if !ok {
				word = word[:0]
				for i := 0; i < len(tok); i++ {
					if i == len(tok)-1 {
						word = append(word, t.byteEndID[tok[i]])
					} else {
						word = append(word, t.byteID[tok[i]])
					}
				}
				res := t.bpeWord(word)
				ids = append([]int32(nil), res...)
				t.cache.put(tok, ids)
			}
			for _, id := range ids {
				dst = append(dst, int(id))
			}
		}
		return len(dst)-start < limit
	})
	if len(dst)-start > limit {
		dst = dst[:start+limit]
	}
	return dst
}

// Batch encodes texts into row-major int64 ids of shape [len(texts) x
// contextLen], zero-padded, and the matching attention mask (1 for real
// tokens, SOT and EOT included; 0 for padding). contextLen <= 0 means
// DefaultContext.
func (t *Tokenizer) Batch(texts []string, contextLen int) (ids []int64, mask []int64) {
	if contextLen <= 0 {
		contextLen = DefaultContext
	}
	ids = make([]int64, len(texts)*contextLen)
	mask = make([]int64, len(texts)*contextLen)
	for i, text := range texts {
		row := t.EncodeContext(text, contextLen)
		off := i * contextLen
		for j, id := range row {
			ids[off+j] = int64(id)
			mask[off+j] = 1
		}
	}
	return ids, mask
}
