#!/usr/bin/env python3
"""Generate tables_gen.go for the Go CLIP tokenizer.

Every table is derived from the reference Python environment (the tools venv:
CPython 3.11 unicodedata, ftfy 6.3.1, regex 2024.11.6) rather than from Go's own
Unicode tables, so the Go port reproduces the exact Unicode version and quirks of
the reference: Python's str.lower()/isspace(), `re` \\s \\w \\d, the `regex`
module's \\p{L} / \\p{N} under IGNORECASE, Python's NFC, html.entities.html5 and
ftfy's character tables and mojibake heuristics.

Run from the repository root:
    .cache/venv/bin/python encoders/tokenizer/gen_tables.py
"""

import html.entities
import importlib.metadata
import os
import re
import re._parser as sre_parse
import shutil
import subprocess
import sys
import unicodedata

import ftfy  # registers the sloppy codecs
import regex
from ftfy import badness, chardata

MAXCP = 0x110000


def all_cps():
    for cp in range(MAXCP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        yield cp


def goquote(s):
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= cp < 0x7F:
            out.append(ch)
        elif cp < 0x10000:
            out.append("\\u%04x" % cp)
        else:
            out.append("\\U%08x" % cp)
    out.append('"')
    return "".join(out)


def to_ranges(cps):
    cps = sorted(set(cps))
    ranges = []
    for cp in cps:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        elif ranges and 0xD800 <= ranges[-1][1] + 1 <= 0xDFFF and cp == 0xE000 and ranges[-1][1] == 0xD7FF:
            ranges[-1][1] = cp  # bridge the surrogate gap (never occurs in Go strings)
        else:
            ranges.append([cp, cp])
    return ranges


def go_ranges(name, cps, comment):
    rs = to_ranges(cps)
    lines = ["// %s\nvar %s = []rune{" % (comment, name)]
    row = []
    for lo, hi in rs:
        row.append("0x%x, 0x%x," % (lo, hi))
        if len(row) == 6:
            lines.append("\t" + " ".join(row))
            row = []
    if row:
        lines.append("\t" + " ".join(row))
    lines.append("}\n")
    return "\n".join(lines)


# --- Python `re` categories (str patterns, Unicode mode) -------------------
RE_SPACE = re.compile(r"\s")
RE_WORD = re.compile(r"\w")
RE_DIGIT = re.compile(r"\d")
CAT_SETS = {}


def cat_set(cat):
    name = str(cat)
    if name not in CAT_SETS:
        pat = {"CATEGORY_SPACE": RE_SPACE, "CATEGORY_WORD": RE_WORD, "CATEGORY_DIGIT": RE_DIGIT}[name]
        CAT_SETS[name] = [cp for cp in all_cps() if pat.match(chr(cp))]
    return CAT_SETS[name]


def in_set(items):
    """The set of code points matched by a parsed character class."""
    negate = False
    cps = set()
    for op, av in items:
        op = str(op)
        if op == "NEGATE":
            negate = True
        elif op == "LITERAL":
            cps.add(av)
        elif op == "RANGE":
            cps.update(range(av[0], av[1] + 1))
        elif op == "CATEGORY":
            cps.update(cat_set(av))
        else:
            raise ValueError("unsupported class item %s" % op)
    if negate:
        cps = set(all_cps()) - cps
    return cps


def go_class(cps):
    parts = []
    for lo, hi in to_ranges(cps):
        if lo == hi:
            parts.append("\\x{%x}" % lo)
        else:
            parts.append("\\x{%x}-\\x{%x}" % (lo, hi))
    return "[" + "".join(parts) + "]"


def to_go(sp):
    """Translate a parsed Python regex (subset used by ftfy) into Go RE2 syntax."""
    out = []
    for op, av in sp.data if hasattr(sp, "data") else sp:
        op = str(op)
        if op == "LITERAL":
            out.append("\\x{%x}" % av)
        elif op == "IN":
            out.append(go_class(in_set(av)))
        elif op == "ANY":
            out.append(".")
        elif op == "AT":
            if str(av) != "AT_BEGINNING":
                raise ValueError(av)
            out.append("^")
        elif op == "BRANCH":
            out.append("(?:" + "|".join(to_go(s) for s in av[1]) + ")")
        elif op == "SUBPATTERN":
            out.append("(?:" + to_go(av[3]) + ")")
        elif op == "MAX_REPEAT":
            lo, hi, sub = av
            body = "(?:" + to_go(sub) + ")"
            if hi == sre_parse.MAXREPEAT:
                out.append(body + ("*" if lo == 0 else "+" if lo == 1 else "{%d,}" % lo))
            elif lo == 0 and hi == 1:
                out.append(body + "?")
            else:
                out.append(body + "{%d,%d}" % (lo, hi))
        else:
            raise ValueError("unsupported op %s" % op)
    return "".join(out)


def mandatory_sets(sp):
    """Sets of code points of the mandatory single-character items of a branch."""
    res = []
    for op, av in sp.data if hasattr(sp, "data") else sp:
        op = str(op)
        if op == "LITERAL":
            res.append({av})
        elif op == "IN":
            if any(str(o) in ("NEGATE", "CATEGORY") for o, _ in av):
                continue
            res.append(in_set(av))
    return res


def literal_cps(sp, acc):
    for op, av in sp.data if hasattr(sp, "data") else sp:
        op = str(op)
        if op == "LITERAL":
            acc.add(av)
        elif op == "IN":
            if not any(str(o) in ("NEGATE", "CATEGORY") for o, _ in av):
                acc.update(in_set(av))
        elif op == "BRANCH":
            for s in av[1]:
                literal_cps(s, acc)
        elif op == "SUBPATTERN":
            literal_cps(av[3], acc)
        elif op == "MAX_REPEAT":
            literal_cps(av[2], acc)
    return acc


def main():
    out = []
    w = out.append
    w("// Code generated by gen_tables.py from the reference Python environment; DO NOT EDIT.\n")
    w("// Python %s, unicodedata %s, ftfy %s, regex %s.\n"
      % (sys.version.split()[0], unicodedata.unidata_version, ftfy.__version__, importlib.metadata.version("regex")))
    w("\npackage tokenizer\n\n")

    # --- html.entities.html5 ---------------------------------------------
    w("// html5Entities is Python's html.entities.html5 (names with and without ';').\n")
    w("var html5Entities = map[string]string{\n")
    for k in sorted(html.entities.html5):
        w("\t%s: %s,\n" % (goquote(k), goquote(html.entities.html5[k])))
    w("}\n\n")

    # ftfy's extra upper-case entities.
    extras = {}
    for k, v in chardata.HTML_ENTITIES.items():
        name = k[1:]
        if html.entities.html5.get(name) == v and name.endswith(";"):
            continue
        extras[k] = v
    rebuilt = {"&" + n: v for n, v in html.entities.html5.items() if n.endswith(";")}
    rebuilt.update(extras)
    assert rebuilt == chardata.HTML_ENTITIES
    w("// ftfyUpperEntities are the all-caps entities ftfy decodes in addition to the html5 ones ending in ';'.\n")
    w("var ftfyUpperEntities = map[string]string{\n")
    for k in sorted(extras):
        w("\t%s: %s,\n" % (goquote(k), goquote(extras[k])))
    w("}\n\n")

    # --- html._invalid_charrefs / _invalid_codepoints -------------------
    import html as htmlmod
    w("// htmlInvalidCharrefs is html._invalid_charrefs.\n")
    w("var htmlInvalidCharrefs = map[int64]string{\n")
    for k in sorted(htmlmod._invalid_charrefs):
        w("\t0x%x: %s,\n" % (k, goquote(htmlmod._invalid_charrefs[k])))
    w("}\n\n")
    w("// htmlInvalidCodepoints is html._invalid_codepoints.\n")
    w("var htmlInvalidCodepoints = map[int64]bool{\n")
    for k in sorted(htmlmod._invalid_codepoints):
        w("\t0x%x: true,\n" % k)
    w("}\n\n")

    # --- single-byte charmaps -----------------------------------------------
    w("// charmapEncodings lists ftfy's CHARMAP_ENCODINGS in order: for each, the characters\n")
    w("// bytes 0x80-0xFF decode to, followed by the one byte 0x1A decodes to.\n")
    w("var charmapEncodings = []charmap{\n")
    for enc in chardata.CHARMAP_ENCODINGS:
        byte_range = bytes(list(range(0x80, 0x100)) + [0x1A])
        chars = byte_range.decode(enc)
        assert len(chars) == 129
        # sanity: encoding each allowed character gives back its byte
        for b, ch in zip(byte_range, chars):
            assert ch.encode(enc) == bytes([b]), (enc, b, ch)
        for b in list(range(0x00, 0x1A)) + list(range(0x1B, 0x80)):
            assert chr(b).encode(enc) == bytes([b])
        w("\t{name: %s, sloppy: %s, high: [129]rune{" % (goquote(enc), "true" if enc.startswith("sloppy") else "false"))
        w(", ".join("0x%x" % ord(c) for c in chars))
        w("}},\n")
    w("}\n\n")

    w("// windows1252Strict is Python's (non-sloppy) windows-1252 decoding of bytes 0x80-0x9F; -1 = undefined.\n")
    w("var windows1252Strict = [32]rune{")
    vals = []
    for b in range(0x80, 0xA0):
        try:
            vals.append("0x%x" % ord(bytes([b]).decode("windows-1252")))
        except UnicodeDecodeError:
            vals.append("-1")
    w(", ".join(vals) + "}\n\n")
    w("// sloppy1252C1 is sloppy-windows-1252 decoding of bytes 0x80-0x9F.\n")
    w("var sloppy1252C1 = [32]rune{")
    w(", ".join("0x%x" % ord(bytes([b]).decode("sloppy-windows-1252")) for b in range(0x80, 0xA0)) + "}\n\n")

    # --- translate tables -------------------------------------------------------
    w("// ligatureMap is ftfy's LIGATURES.\n")
    w("var ligatureMap = map[rune]string{\n")
    for k in sorted(chardata.LIGATURES):
        w("\t0x%x: %s,\n" % (k, goquote(chardata.LIGATURES[k])))
    w("}\n\n")
    w("// widthMap is ftfy's WIDTH_MAP.\n")
    w("var widthMap = map[rune]string{\n")
    for k in sorted(chardata.WIDTH_MAP):
        w("\t0x%x: %s,\n" % (k, goquote(chardata.WIDTH_MAP[k])))
    w("}\n\n")
    w(go_ranges("controlCharRanges", [k for k in chardata.CONTROL_CHARS], "controlCharRanges are the characters ftfy's remove_control_chars deletes."))

    # --- badness regex ----------------------------------------------------------
    bad_tree = sre_parse.parse(badness.BADNESS_RE.pattern, re.VERBOSE)
    w("// badnessPattern is ftfy.badness.BADNESS_RE translated to Go syntax (the tests\n// check the hand-written matcher in badness.go against it).\n")
    w("const badnessPattern = %s\n\n" % goquote(to_go(bad_tree)))
    # Prefilter: every alternative must have a mandatory item made only of non-ASCII chars
    # drawn from the union set, so a text without any of them cannot be "bad".
    union = set(cp for cp in literal_cps(bad_tree, set()) if cp >= 0x80)
    (op, av), = bad_tree.data
    assert str(op) == "BRANCH"
    for alt in av[1]:
        ok = any(s and all(cp >= 0x80 for cp in s) and s <= union for s in mandatory_sets(alt))
        assert ok, alt
    w(go_ranges("badnessCandidateRanges", union, "badnessCandidateRanges: a text can only be 'bad' if it holds one of these."))
    # Every match is at most this many characters long and holds a candidate, so
    # the pattern can be evaluated on windows around candidates only.
    width = max(alt.getwidth()[1] for alt in av[1])
    assert width < 100
    # A compiled form of the same pattern for the hand-written matcher in
    # badness.go: each branch is a sequence of single-character items (with an
    # optional '?'); each distinct character class gets one bit.
    bits = {}        # frozenset or special name -> bit
    finite = []      # (bit, cps)
    specials = {}    # name -> bit
    def class_bit(op, avv):
        if op == "ANY":
            key = "any"
        elif op == "LITERAL":
            key = frozenset([avv])
        else:
            names = [str(o) for o, _ in avv]
            if names == ["CATEGORY"] and str(avv[0][1]) == "CATEGORY_SPACE":
                key = "space"
            elif names == ["CATEGORY"] and str(avv[0][1]) == "CATEGORY_WORD":
                key = "word"
            elif "NEGATE" in names or "CATEGORY" in names:
                assert names[0] == "NEGATE" and "CATEGORY" not in names, names
                cps = in_set([x for x in avv if str(x[0]) != "NEGATE"])
                assert all(cp < 0x80 for cp in cps), "only negations of ASCII sets supported"
                key = ("not", frozenset(cps))
            else:
                key = frozenset(in_set(avv))
        if key not in bits:
            bits[key] = len(bits)
        return bits[key]
    alts_go = []
    for alt in av[1]:
        items, begin = [], False
        for o, a in alt.data:
            o = str(o)
            if o == "AT":
                assert not items and str(a) == "AT_BEGINNING"
                begin = True
            elif o == "MAX_REPEAT":
                lo, hi, sub = a
                assert (lo, hi) == (0, 1) and len(sub.data) == 1
                so, sa = sub.data[0]
                items.append((class_bit(str(so), sa), True))
            else:
                items.append((class_bit(o, a), False))
        alts_go.append((begin, items))
    assert len(bits) <= 128, len(bits)
    w("// badnessAlts is badnessPattern as branches of single-character items.\n")
    w("var badnessAlts = []badAlt{\n")
    for begin, items in alts_go:
        w("\t{begin: %s, items: []badItem{%s}},\n" % ("true" if begin else "false",
          ", ".join("{bit: %d, opt: %s}" % (b, "true" if opt else "false") for b, opt in items)))
    w("}\n\n")
    w("// badnessClassSets are the finite classes of badnessAlts by bit; the others\n")
    w("// are badBitSpace (Python \\s), badBitWord (Python \\w), badBitAny (not '\\n')\n")
    w("// and badNotASCII (bits of negated ASCII classes, with their members).\n")
    w("var badnessClassSets = map[int][]rune{\n")
    for key, b in sorted(bits.items(), key=lambda kv: kv[1]):
        if isinstance(key, frozenset):
            w("\t%d: {%s},\n" % (b, ", ".join("0x%x" % cp for cp in sorted(key))))
    w("}\n\n")
    w("var badnessNotASCII = map[int]string{\n")
    for key, b in sorted(bits.items(), key=lambda kv: kv[1]):
        if isinstance(key, tuple):
            w("\t%d: %s,\n" % (b, goquote("".join(chr(c) for c in sorted(key[1])))))
    w("}\n\n")
    w("const (\n\tbadBitSpace = %d\n\tbadBitWord = %d\n\tbadBitAny = %d\n)\n\n"
      % (bits.get("space", -1), bits.get("word", -1), bits.get("any", -1)))
    w(go_ranges("pyWordRanges", cat_set("CATEGORY_WORD"), "pyWordRanges is Python re's \\w for str patterns."))

    w("// badnessMaxWidth is the longest match of badnessPattern, in characters.\n")
    w("const badnessMaxWidth = %d\n\n" % width)

    # --- UTF8_DETECTOR_RE --------------------------------------------------------
    det_tree = sre_parse.parse(chardata.UTF8_DETECTOR_RE.pattern, re.VERBOSE)
    (a_op, a_av), (r_op, r_av) = det_tree.data
    assert str(a_op) == "ASSERT_NOT" and a_av[0] == -1
    (lb_op, lb_av), = a_av[1].data
    assert str(lb_op) == "IN"
    w(go_ranges("utf8StrictContinuationRanges", in_set(lb_av), "utf8StrictContinuationRanges is the class of UTF8_DETECTOR_RE's negative lookbehind."))
    # The characters a match can start with: the first class of each branch of the repeated group.
    lo_, hi_, body = r_av
    (g_op, g_av), = body.data
    assert str(g_op) == "SUBPATTERN"
    (b_op, b_av), = g_av[3].data
    assert str(b_op) == "BRANCH"
    firsts = set()
    for br in b_av[1]:
        f_op, f_av = br.data[0]
        assert str(f_op) == "IN"
        firsts |= in_set(f_av)
    w(go_ranges("utf8DetectorFirstRanges", firsts, "utf8DetectorFirstRanges: the characters a UTF8_DETECTOR_RE match can start with."))
    w("// utf8DetectorPattern is UTF8_DETECTOR_RE without its lookbehind, in Go syntax.\n")
    w("const utf8DetectorPattern = %s\n\n" % goquote(to_go([(r_op, r_av)])))

    # --- Python str.isspace, re \d ---------------------------------------------
    w(go_ranges("pySpaceRanges", [cp for cp in all_cps() if chr(cp).isspace()], "pySpaceRanges is Python's str.isspace()."))
    w(go_ranges("pyDigitRanges", cat_set("CATEGORY_DIGIT"), "pyDigitRanges is Python re's \\d for str patterns."))

    # --- Python str.lower() -------------------------------------------------------
    w("// lowerMap is Python's str.lower() for single non-ASCII characters that change\n")
    w("// (U+03A3 is handled contextually, see pyLower).\n")
    w("var lowerMap = map[rune]string{\n")
    for cp in all_cps():
        if cp < 0x80:
            continue
        lo = chr(cp).lower()
        if lo != chr(cp):
            w("\t0x%x: %s,\n" % (cp, goquote(lo)))
    w("}\n\n")
    cased, ignorable = [], []
    for cp in all_cps():
        c = chr(cp)
        p1 = ("A\u03a3" + c).lower()[1]
        p3 = ("A" + c + "\u03a3").lower()[-1]
        x = p1 == "\u03c3"          # cased and not case-ignorable
        y = p3 == "\u03c2"          # cased or case-ignorable
        if x:
            cased.append(cp)
        elif y:
            ignorable.append(cp)
    w(go_ranges("pyCasedRanges", cased, "pyCasedRanges: cased and not case-ignorable, as seen by Python's final-sigma rule."))
    w(go_ranges("pyCaseIgnorableRanges", ignorable, "pyCaseIgnorableRanges: case-ignorable, as seen by Python's final-sigma rule."))

    # --- regex module classes used by the CLIP pre-tokenizer (IGNORECASE) -----
    L = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    N = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    O = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    ls, ns, os_ = [], [], []
    for cp in all_cps():
        c = chr(cp)
        if L.match(c):
            ls.append(cp)
        if N.match(c):
            ns.append(cp)
        if O.match(c):
            os_.append(cp)
    assert not (set(ls) & set(ns)) and not (set(ls) & set(os_)) and not (set(ns) & set(os_))
    w(go_ranges("reLetterRanges", ls, "reLetterRanges is regex's [\\p{L}] under IGNORECASE."))
    w(go_ranges("reNumberRanges", ns, "reNumberRanges is regex's [\\p{N}] under IGNORECASE."))
    w(go_ranges("reOtherRanges", os_, "reOtherRanges is regex's [^\\s\\p{L}\\p{N}] under IGNORECASE."))
    w("// reFoldEquivalents lists, for each ASCII letter of the pre-tokenizer's literal\n")
    w("// alternatives, the non-ASCII characters regex's IGNORECASE also accepts for it.\n")
    w("var reFoldEquivalents = map[byte][]rune{\n")
    letters = sorted(set("strevmld" + "start_of_textend_of_text"))
    for ch in letters:
        eq = [cp for cp in all_cps() if cp >= 0x80 and regex.match(regex.escape(ch), chr(cp), regex.IGNORECASE)]
        if eq:
            w("\t'%s': {%s},\n" % (ch, ", ".join("0x%x" % cp for cp in eq)))
    w("}\n\n")

    # --- NFC (Python unicodedata) ---------------------------------------------
    ccc = {}
    decomp = {}
    qc_no = []
    pairs = {}
    for cp in all_cps():
        c = chr(cp)
        k = unicodedata.combining(c)
        if k:
            ccc[cp] = k
        if 0xAC00 <= cp <= 0xD7A3:
            continue
        d = unicodedata.normalize("NFD", c)
        if d != c:
            decomp[cp] = d
        if unicodedata.normalize("NFC", c) != c:
            qc_no.append(cp)
        dm = unicodedata.decomposition(c)
        if dm and not dm.startswith("<"):
            parts = dm.split()
            if len(parts) == 2 and unicodedata.normalize("NFC", c) == c:
                pairs[(int(parts[0], 16), int(parts[1], 16))] = cp
    w("// cccMap is unicodedata.combining for non-zero classes.\n")
    w("var cccMap = map[rune]uint8{\n")
    for cp in sorted(ccc):
        w("\t0x%x: %d,\n" % (cp, ccc[cp]))
    w("}\n\n")
    w("// decompMap is the full canonical decomposition (NFD) of single characters (Hangul excluded).\n")
    w("var decompMap = map[rune]string{\n")
    for cp in sorted(decomp):
        w("\t0x%x: %s,\n" % (cp, goquote(decomp[cp])))
    w("}\n\n")
    w("// composePairs maps a canonical pair to its primary composite (Hangul excluded).\n")
    w("var composePairs = map[[2]rune]rune{\n")
    for (a, b) in sorted(pairs):
        w("\t{0x%x, 0x%x}: 0x%x,\n" % (a, b, pairs[(a, b)]))
    w("}\n\n")
    seconds = set(b for (_, b) in pairs) | set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    w(go_ranges("nfcQCNoRanges", qc_no, "nfcQCNoRanges: characters that NFC never keeps."))
    w(go_ranges("nfcQCMaybeRanges", seconds, "nfcQCMaybeRanges: characters that may compose with the previous one."))

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tables_gen.go")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(out))
    if shutil.which("gofmt"):
        subprocess.run(["gofmt", "-w", path], check=True)
    print("wrote", path)


if __name__ == "__main__":
    main()
