package banks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// SignalType is the kind of signal an entry holds.
type SignalType string

// The signal types.
const (
	// SignalPDQ: a 256-bit PDQ hash (64 hex characters), matched by Hamming
	// distance at the bank's pdq threshold.
	SignalPDQ SignalType = "pdq"
	// SignalMD5: the MD5 of a media file's bytes (32 hex characters),
	// matched exactly (python-threatexchange's video_md5, HMA's photo_md5).
	SignalMD5 SignalType = "md5"
	// SignalText: a text, matched exactly after NormalizeText
	// (python-threatexchange's raw_text).
	SignalText SignalType = "text"
	// SignalURL: a URL, matched exactly after NormalizeURL.
	SignalURL SignalType = "url"
	// SignalEmbedding: a model's vector of a written concept (modality
	// text) or of an exemplar image (modality image), matched by cosine
	// similarity at the bank's threshold for the pair of modalities.
	SignalEmbedding SignalType = "embedding"
)

// SignalTypes lists the signal types.
var SignalTypes = []SignalType{SignalPDQ, SignalMD5, SignalText, SignalURL, SignalEmbedding}

// Limits of a signal's size (canonical form; a raw input longer than
// MaxRawSignalBytes is refused before it is normalised).
const (
	MaxTextBytes      = 16 << 10
	MaxURLBytes       = 8 << 10
	MaxConceptBytes   = 2 << 10
	MaxRawSignalBytes = 64 << 10
)

// ParseSignalType reads a signal type by its name here or its name in
// python-threatexchange and HMA: pdq; md5, photo_md5, video_md5; text,
// raw_text; url; embedding. Case and surrounding space are ignored.
func ParseSignalType(s string) (SignalType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pdq":
		return SignalPDQ, nil
	case "md5", "photo_md5", "video_md5":
		return SignalMD5, nil
	case "text", "raw_text":
		return SignalText, nil
	case "url":
		return SignalURL, nil
	case "embedding":
		return SignalEmbedding, nil
	}
	return "", fmt.Errorf("%w %s (want pdq, md5, photo_md5, video_md5, text, raw_text, url or embedding)", ErrUnknownSignalType, quote(s))
}

// ExchangeName is the type's name in python-threatexchange's files (what
// export writes): pdq, video_md5 (its only MD5 type), raw_text, url; ""
// for embeddings, which have no such form.
func (t SignalType) ExchangeName() string {
	switch t {
	case SignalPDQ:
		return "pdq"
	case SignalMD5:
		return "video_md5"
	case SignalText:
		return "raw_text"
	case SignalURL:
		return "url"
	}
	return ""
}

// Valid reports whether t is one of the signal types.
func (t SignalType) Valid() bool {
	switch t {
	case SignalPDQ, SignalMD5, SignalText, SignalURL, SignalEmbedding:
		return true
	}
	return false
}

// Canonical validates a signal of type t and returns its canonical form,
// the one form stored and compared: lower-case hex for pdq and md5,
// NormalizeText for text, NormalizeURL for url. For embeddings the value
// names the vector's source: the concept's text (trimmed) for a text
// concept, the lower-case hex SHA-256 of the image for an exemplar (see
// CanonicalEmbedding).
func Canonical(t SignalType, value string) (string, error) {
	if len(value) > MaxRawSignalBytes {
		return "", fmt.Errorf("%w: a %s signal of %d bytes (at most %d)", ErrSignalTooLong, t, len(value), MaxRawSignalBytes)
	}
	switch t {
	case SignalPDQ:
		v := strings.TrimSpace(value)
		if _, err := pdq.ParseHex(v); err != nil {
			return "", fmt.Errorf("%w: %v", ErrMalformedSignal, err)
		}
		return strings.ToLower(v), nil
	case SignalMD5:
		return canonicalHex(value, "md5", 16)
	case SignalText:
		v := NormalizeText(value)
		if v == "" {
			return "", fmt.Errorf("%w: text %s is empty once normalised", ErrMalformedSignal, quote(value))
		}
		if len(v) > MaxTextBytes {
			return "", fmt.Errorf("%w: text of %d bytes once normalised (at most %d)", ErrSignalTooLong, len(v), MaxTextBytes)
		}
		return v, nil
	case SignalURL:
		v, err := NormalizeURL(value)
		if err != nil {
			return "", err
		}
		if len(v) > MaxURLBytes {
			return "", fmt.Errorf("%w: URL of %d bytes once normalised (at most %d)", ErrSignalTooLong, len(v), MaxURLBytes)
		}
		return v, nil
	case SignalEmbedding:
		return "", fmt.Errorf("%w: an embedding signal needs its modality (CanonicalEmbedding)", ErrMalformedSignal)
	}
	return "", fmt.Errorf("%w %s", ErrUnknownSignalType, quote(string(t)))
}

// CanonicalEmbedding is Canonical for an embedding entry of modality
// "text" (value: the concept, trimmed, at most MaxConceptBytes) or "image"
// (value: the exemplar image's SHA-256, 64 hex characters).
func CanonicalEmbedding(modality, value string) (string, error) {
	switch modality {
	case "text":
		v := strings.TrimSpace(value)
		if v == "" {
			return "", fmt.Errorf("%w: an empty concept", ErrMalformedSignal)
		}
		if len(v) > MaxConceptBytes {
			return "", fmt.Errorf("%w: a concept of %d bytes (at most %d)", ErrSignalTooLong, len(v), MaxConceptBytes)
		}
		return v, nil
	case "image":
		return canonicalHex(value, "exemplar image sha256", 32)
	}
	return "", fmt.Errorf("%w: embedding modality %s (want text or image)", ErrMalformedSignal, quote(modality))
}

func canonicalHex(value, what string, nbytes int) (string, error) {
	v := strings.ToLower(strings.TrimSpace(value))
	if len(v) != 2*nbytes {
		return "", fmt.Errorf("%w: %s %s has %d characters, want %d hex characters", ErrMalformedSignal, what, quote(value), len(v), 2*nbytes)
	}
	if _, err := hex.DecodeString(v); err != nil {
		return "", fmt.Errorf("%w: %s %s is not hex", ErrMalformedSignal, what, quote(value))
	}
	return v, nil
}

// EntryID is the id of an entry: derived from its type and canonical
// value (and modality for embeddings), so that adding a signal again to a
// bank replaces its entry and an import run twice adds nothing new. The
// form is "<type>-" and 32 hex characters (128 bits of SHA-256).
func EntryID(t SignalType, modality, canonical string) string {
	h := entryHash(t, modality, canonical)
	return string(t) + "-" + hex.EncodeToString(h[:])
}

func entryHash(t SignalType, modality, canonical string) [16]byte {
	return entryHashBytes(t, modality, []byte(canonical))
}

// entryHashBytes is entryHash of a canonical value in bytes: SHA-256 of
// type, NUL, modality, NUL, value, cut to 128 bits.
func entryHashBytes(t SignalType, modality string, canonical []byte) [16]byte {
	var a [128]byte
	buf := append(a[:0], t...)
	buf = append(buf, 0)
	buf = append(buf, modality...)
	buf = append(buf, 0)
	buf = append(buf, canonical...)
	sum := sha256.Sum256(buf)
	return [16]byte(sum[:16])
}

// parseEntryID returns the hash of an id of EntryID's form.
func parseEntryID(id string) ([16]byte, bool) {
	var h [16]byte
	i := strings.IndexByte(id, '-')
	if i < 0 || len(id)-i-1 != 32 || !SignalType(id[:i]).Valid() {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(id[i+1:])); err != nil {
		return h, false
	}
	return h, true
}
