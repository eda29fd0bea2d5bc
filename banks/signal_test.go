package banks

import (
	"errors"
	"strings"
	"testing"
)

const (
	pdqA = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
	md5A = "cab08b36195edb1a1231d2d09fa450e0"
)

func TestParseSignalType(t *testing.T) {
	for in, want := range map[string]SignalType{
		"pdq": SignalPDQ, " PDQ ": SignalPDQ, "md5": SignalMD5, "photo_md5": SignalMD5, "video_md5": SignalMD5,
		"text": SignalText, "raw_text": SignalText, "url": SignalURL, "embedding": SignalEmbedding,
	} {
		got, err := ParseSignalType(in)
		if err != nil || got != want {
			t.Errorf("ParseSignalType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "sha256", "pdqf", "tmk"} {
		if _, err := ParseSignalType(bad); !errors.Is(err, ErrUnknownSignalType) {
			t.Errorf("ParseSignalType(%q): %v, want ErrUnknownSignalType", bad, err)
		}
	}
	for _, st := range []SignalType{SignalPDQ, SignalMD5, SignalText, SignalURL} {
		back, err := ParseSignalType(st.ExchangeName())
		if err != nil || back != st {
			t.Errorf("%s: exchange name %q reads back as %q, %v", st, st.ExchangeName(), back, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		t         SignalType
		in, want  string
		err       error
		errSubstr string
	}{
		{SignalPDQ, pdqA, pdqA, nil, ""},
		{SignalPDQ, " " + strings.ToUpper(pdqA) + "\n", pdqA, nil, ""},
		{SignalPDQ, pdqA[:63], "", ErrMalformedSignal, "length 63"},
		{SignalPDQ, pdqA + "0", "", ErrMalformedSignal, "length 65"},
		{SignalPDQ, "g" + pdqA[1:], "", ErrMalformedSignal, "invalid byte"},
		{SignalPDQ, "", "", ErrMalformedSignal, "length 0"},
		{SignalMD5, strings.ToUpper(md5A), md5A, nil, ""},
		{SignalMD5, md5A[:31], "", ErrMalformedSignal, "31 characters"},
		{SignalMD5, strings.Repeat("z", 32), "", ErrMalformedSignal, "not hex"},
		{SignalText, "  Hello,   World ", "hello world", nil, ""},
		{SignalText, "!!!", "", ErrMalformedSignal, "empty once normalised"},
		{SignalText, strings.Repeat("a", 10<<20), "", ErrSignalTooLong, "10485760 bytes"},
		{SignalText, strings.Repeat("ab ", 6000), "", ErrSignalTooLong, "once normalised"},
		{SignalURL, "HTTPS://Example.com/x/", "example.com/x", nil, ""},
		{SignalURL, "not a url at all", "", ErrMalformedSignal, ""},
		{SignalType("tmk"), "x", "", ErrUnknownSignalType, "tmk"},
	} {
		got, err := Canonical(tc.t, tc.in)
		if tc.err == nil {
			if err != nil || got != tc.want {
				t.Errorf("Canonical(%s, %s) = %q, %v; want %q", tc.t, quote(tc.in), got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.errSubstr) {
			t.Errorf("Canonical(%s, %s): error %v; want %v containing %q", tc.t, quote(tc.in), err, tc.err, tc.errSubstr)
		}
	}
}

func TestEntryID(t *testing.T) {
	a := EntryID(SignalPDQ, "", pdqA)
	if a != EntryID(SignalPDQ, "", pdqA) || !strings.HasPrefix(a, "pdq-") || len(a) != 4+32 {
		t.Fatalf("EntryID = %q", a)
	}
	if a == EntryID(SignalText, "", pdqA) || EntryID(SignalEmbedding, "text", "x") == EntryID(SignalEmbedding, "image", "x") {
		t.Fatal("ids of different types or modalities collide")
	}
	if h, ok := parseEntryID(a); !ok || h != entryHash(SignalPDQ, "", pdqA) {
		t.Fatalf("parseEntryID(%q) = %x %v", a, h, ok)
	}
	for _, bad := range []string{"", "pdq", "pdq-xyz", "tmk-" + a[4:], a + "0"} {
		if _, ok := parseEntryID(bad); ok {
			t.Errorf("parseEntryID(%q) accepted", bad)
		}
	}
}
