#!/usr/bin/env python3
"""Build the golden corpus for the Go CLIP tokenizer (encoders/tokenizer).

Writes testdata/tokenizer/goldens.jsonl: one JSON object per line with
  "cat":  corpus category,
  "text": the input string,
  "ids":  the unpadded reference ids (SOT ... EOT, truncated to 77 keeping EOT)
          from open_clip's SimpleTokenizer, checked against open_clip.tokenize,
and, for invalid UTF-8 inputs, "raw_b64": the raw input bytes (base64); "text"
is then bytes.decode("utf-8", "replace").

Deterministic: fixed seeds, no clock, no network. Run from the repo root:
    .cache/venv/bin/python tools/gen_tokenizer_goldens.py
"""

import base64
import importlib.metadata
import json
import os
import random
import sys

import ftfy
import open_clip
import regex
from open_clip.tokenizer import SimpleTokenizer, tokenize

CONTEXT = 77
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "testdata", "tokenizer", "goldens.jsonl")

TOK = SimpleTokenizer()


def reference_ids(text):
    ids = [TOK.sot_token_id] + TOK.encode(text) + [TOK.eot_token_id]
    if len(ids) > CONTEXT:
        ids = ids[:CONTEXT]
        ids[-1] = TOK.eot_token_id
    row = tokenize([text], context_length=CONTEXT)[0].tolist()
    assert row[: len(ids)] == ids and all(x == 0 for x in row[len(ids):]), text
    return ids


# ---------------------------------------------------------------------------
# Social posts
USERS = ["@nasa", "@elonmusk", "@BBCBreaking", "@dev_jane", "@côté_cuisine", "@user123", "@_x_", "@ÄrzteTeam",
         "@tokyo_eats", "@NBA", "@cat.lover", "@a"]
TAGS = ["#AI", "#MachineLearning", "#tbt", "#NoFilter", "#München", "#東京", "#SaveTheBees", "#COVID19",
        "#100DaysOfCode", "#über", "#GameDay", "#ThrowbackThursday", "#café", "#2024goals", "#نور"]
URLS = ["https://t.co/AbC123xyZ", "http://example.com/path?q=1&x=2", "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "www.bbc.co.uk/news", "https://github.com/xmodal/xmodal/pull/42#issuecomment-1", "bit.ly/3xYz",
        "https://ja.wikipedia.org/wiki/%E6%9D%B1%E4%BA%AC", "ftp://files.example.org/a_b-c.tar.gz"]
EMOJI = ["😂", "😂😂😂", "🔥🔥", "❤️", "👍🏽", "🇫🇷", "🇺🇸🇬🇧", "👨‍👩‍👧‍👦", "🏳️‍🌈", "✨", "🙏🏻🙏🏻", "💯", "🤔", "🥲",
         "☕️", "⚽", "🎉🎊🥳", "😍😘", "👀", "🚀🌕", "✌🏿", "🤷‍♀️", "©️", "1️⃣", "#️⃣"]
SENTENCES = [
    "Just landed in Tokyo and the food is already amazing",
    "Can't believe it's already Friday!!!",
    "New blog post: how we cut our inference latency by 40%",
    "who else is watching the game tonight?",
    "I'm sooo tired of these Monday meetings lol",
    "BREAKING: major outage reported across the east coast",
    "Check out my new video, link below",
    "this is the best pizza I've ever had, no cap",
    "We'll be live at 8PM EST — don't miss it",
    "RT if you agree",
    "omg the sunset tonight 🌅 was unreal",
    "Thread 🧵 1/7: why your model isn't learning",
    "You're not gonna believe what happened at the airport...",
    "They'd said it would rain; it didn't.",
    "Prices up 3.5% y/o/y, rent +12%, eggs $4.99/doz",
    "GOOOOAAAALLLL!!!!!",
    "lmaooooo 💀💀💀",
    "Happy birthday to my best friend <3",
    "Ready for the weekend :) :-D ;) xD",
    "Q: what's 2+2? A: 4 (obviously)",
]
ENDINGS = ["", "!", "!!", "?!", "...", " …", " 🙌", " /s", " (thread)", " via {u}"]


def social_posts(rng):
    posts = []
    for i in range(100):
        s = rng.choice(SENTENCES)
        parts = []
        if rng.random() < 0.4:
            parts.append(rng.choice(USERS))
        parts.append(s + rng.choice(ENDINGS).format(u=rng.choice(USERS)))
        for _ in range(rng.randint(0, 3)):
            parts.append(rng.choice(TAGS))
        if rng.random() < 0.5:
            parts.append(rng.choice(URLS))
        if rng.random() < 0.6:
            parts.insert(rng.randint(0, len(parts)), rng.choice(EMOJI) * rng.randint(1, 3))
        sep = rng.choice([" ", " ", " ", "  ", "\n", " | "])
        text = sep.join(parts)
        if i % 10 == 0:
            text = text.upper()
        if i % 13 == 0:
            text = "RT " + rng.choice(USERS) + ": " + text
        posts.append(text)
    return posts


# ---------------------------------------------------------------------------
SCRIPTS = [
    "東京は今日とても暑いです。",
    "我今天很高兴见到你！",
    "北京欢迎你 #北京",
    "这是一个测试句子，包含标点符号。",
    "今日のランチはラーメン🍜でした",
    "カタカナとひらがなとKanjiのMIX",
    "ｶﾀｶﾅ ﾊﾝｶｸ",
    "안녕하세요, 만나서 반갑습니다!",
    "오늘 날씨가 정말 좋네요 ☀️",
    "한국어 텍스트와 English mixed",
    "각 자모 조합",
    "مرحبا بالعالم",
    "السلام عليكم ورحمة الله",
    "أنا أحب البرمجة 💻",
    "الأرقام العربية: ٠١٢٣٤٥٦٧٨٩",
    "فِي البَدْءِ كانَ الكَلِمَة",
    "שלום עולם",
    "Привет, мир!",
    "Москва — столица России.",
    "ЁЛКИ-ПАЛКИ, ВОТ ЭТО ДА",
    "Слава Україні! Ґанок, їжак, є",
    "Беларуская мова: ў",
    "สวัสดีครับ ยินดีต้อนรับ",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "ประเทศไทย ๑๒๓",
    "नमस्ते दुनिया",
    "हिन्दी में लिखा गया वाक्य।",
    "বাংলা ভাষা",
    "தமிழ் மொழி",
    "ქართული ენა",
    "Հայերեն լեզու",
    "Ελληνικά: ΟΔΥΣΣΕΥΣ και ΣΟΦΙΑ",
    "ΣΊΣΥΦΟΣ ΣΑΣ",
    "Ἀριστοτέλης ὁ φιλόσοφος",
    "Tiếng Việt có dấu: Hà Nội, Đà Nẵng",
    "Türkçe: İstanbul, IĞDIR, ılık",
    "Ǆemal i ǅemal",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "ⴰⵣⵓⵍ ⴰⴼⵍⴰⵡ",
    "ሰላም ልዑል",
    "🇯🇵日本語と🇰🇷한국어",
    "漢字テスト：龍、鬱、𠮷野家",
    "𝕳𝖊𝖑𝖑𝖔 𝓦𝓸𝓻𝓵𝓭",
    "ℌ𝔢𝔩𝔩𝔬 mathematical",
    "Монгол бичиг ᠮᠣᠩᠭᠣᠯ",
    "ཀ་ཁ་ག tibetan",
    "ꦗꦮ javanese",
    "中文、English、日本語、한국어、Русский、العربية",
    "ﷺ ﷽ ligatures arabes",
    "ﻻ ﻷ presentation forms",
]

ACCENTS = [
    "café", "naïve façade", "Crème brûlée", "piñata", "Ångström", "Øresund", "São Paulo", "Zürich", "Kraków",
    "Dvořák", "Ærøskøbing", "Straße", "STRASSE vs straße", "ﬁnancial ﬂow", "ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳssel ĳs",
    "ǅ ǈ ǋ ǲ", "ŉ", "ＬＯＵＤ　ＮＯＩＳＥＳ", "ｆｕｌｌｗｉｄｔｈ １２３", "Ｕﾀｰﾝ", "＃ｈａｓｈｔａｇ ＠ｍｅｎｔｉｏｎ",
    "e\u0301 decomposed", "A\u030a\u0301", "o\u0308\u0304", "\u1e9b\u0323", "q\u0307\u0323", "ḍ̇ ḍ̇",
    "\u212b angstrom sign", "\u2126 ohm", "\u00b5 micro", "ﬃ\u0301", "x\u0345y", "\u0399\u0345", "ᾳ ᾼ",
    "“curly” ‘quotes’ ‚low‛ „double‟", "it’s can’t won’t", "ʼapostrophe", "½ ¼ ¾ ² ³ ¹", "™ ® © ℠",
    "ℕ ℤ ℚ ℝ ℂ", "Ⅻ ⅻ Ⅳ", "①②③ ⑴ ⒜", "㍿ ㎏ ㍻", "ſ long s: 'ſ ſtart", "<ſtart_of_text> test",
    "Ⓐⓑⓒ circled", "ǰ̌", "ΐ ΰ", "\u0130stanbul \u0130I",
]

HTML = [
    "Fish &amp; Chips", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot; &apos;single&apos;", "caf&eacute; na&iuml;ve",
    "P&EACUTE;REZ &NTILDE; BUNDESSTRA&SZLIG;E", "&ntilde; &Ntilde; &NTILDE; &nTILDE;", "&hellip; &mdash; &ndash;",
    "&copy; 2024 &reg; &trade;", "&nbsp;&nbsp;indented", "&#8217;s &#x2019;s", "&#128512; &#x1F600;",
    "&#150; &#x96; &#128;", "&#0; &#x0; &#13;", "&#x110000; &#1114112;", "&#55357;&#56832;", "&#xD83D;",
    "&#65 &#x41 &#65abc", "&amp &lt &gt &copy &reg", "&copyright; &notin; &notit;", "&ampfoo &amplifier",
    "&amp;amp;lt; triple", "&amp;lt;script&amp;gt;", "&#38;amp; &#38;#38;", "AT&T and H&M", "R&D; Q&A;",
    "&unknownentity; &#xZZ; &#;", "&Jscr;ohn &HilbertSpace;ancock", "&checkmark; &check;", "&NewLine; &Tab;x",
    "<b>bold</b> &amp; more", "<p>Hello&nbsp;world</p>", "<a href=\"https://x.com?a=1&amp;b=2\">link</a>",
    "<script>alert('x')</script>", "<br/>line<br>break", "line one &amp;\n<i>line two</i> &amp;\nthree &amp;",
    "first &eacute;\nsecond <tag> &eacute;", "&lt;3 you", "I <3 you &amp; me", "5 &gt; 3 &amp;&amp; 2 &lt; 4",
    "&#x3C;b&#x3E;", "&frac12; cup &deg;C", "&alpha;&beta;&gamma; &Omega;", "&euro;5 &pound;3 &yen;",
    "&larr; &rarr; &harr; &uarr;", "&hearts;&spades;&clubs;&diams;", "&zwj;&zwnj;&lrm;&rlm;", "&shy;soft&shy;hyphen",
    "&#9;tab&#10;newline&#32;space", "&#x1b;[31mred&#x1b;[0m", "&#1234567890123456789012345;",
]

WHITESPACE = [
    "tab\tseparated\tvalues", "line1\nline2\nline3", "windows\r\nline\r\nendings", "old mac\rline", "  leading",
    "trailing   ", "   both   ", "\n\n\n", "\t \t", "no\u00a0break\u00a0space", "zero\u200bwidth\u200bspace",
    "zwj\u200dzwnj\u200c", "ideographic\u3000space", "en\u2002em\u2003thin\u2009hair\u200a", "narrow\u202fnbsp",
    "mongolian\u180evowel", "ogham\u1680space", "line\u2028separator\u2029para", "vt\x0bff\x0cx",
    "fs\x1cgs\x1drs\x1eus\x1f", "nel\x85next", "\ufeffbom at start", "bom\ufeffinside", "soft\u00adhyphen",
    "word\u2060joiner", "medium\u205fmath", "multiple     spaces    here", " \u00a0 \u2003 ", "a\r\n\r\nb",
    "\x00null\x01soh\x7fdel",
]

MOJIBAKE_SOURCES = [
    "café", "naïve", "schön", "voilà le travail", "“quoted”", "it’s", "—em dash", "…", "✔ No problems",
    "Привет", "日本語", "😀 emoji", "Ελληνικά", "Straße", "à la mode", "€100", "ñandú", "Zürich", "São Paulo",
    "☺", "•bullet", "™", "Ø", "ﬁ", "°C", "½", "¿Qué?", "Œuvre", "Łódź",
]


def mojibake(rng):
    out = ["âœ” No problems", "schÃ¶n", "voilÃ le travail", "Ã la mode", "â€œ like this â€�", "sÃ³",
           "&macr;\\_(ã\x83\x84)_/&macr;", "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!", "Ã¼ber cool",
           "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "РџСЂРёРІРµС‚",
           "ãƒ†ã‚¹ãƒˆ", "Ã©tÃ©", "cafÃ\xa9", "Ã¢â‚¬Å“", "\x80\x93 c1 \x9d", "l\x92humour", "He said \x93hi\x94",
           "fÃ cil", "Ã s vezes", "Ã quele", "âœ” and \u00e2\u0080\u0099 mixed", "pÃ£o de aÃ§Ãºcar",
           "\xed\xa0\xbd\xed\xb8\x8d cesu", "Ã\x80 \u00c3\xa0", "Ã\u00a0 la carte", "isnâ€™t", "weâ€™re",
           "Ð°Ð±Ð²", "Î±Î²Î³", "ÄŒeÅ¡tina", "ðŸ˜€", "ðŸ‘ðŸ»", "\u00c3\u00a9 \u00c3 \u00a9", "â€", "Ã",
           "a\x1ab", "Ã\x1a test", "â€\x1a\x1a", "Ã? what", "â€? quest"]
    encs = ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "iso-8859-2", "mac_roman",
            "cp437", "sloppy-windows-1252"]
    for src in MOJIBAKE_SOURCES:
        enc = rng.choice(encs)
        try:
            bad = src.encode("utf-8").decode(enc)
        except UnicodeDecodeError:
            bad = src.encode("utf-8").decode("sloppy-windows-1252")
        out.append(bad)
        if rng.random() < 0.3:  # double mojibake
            try:
                out.append(bad.encode("utf-8").decode("sloppy-windows-1252"))
            except UnicodeDecodeError:
                pass
        if rng.random() < 0.3:  # NBSP flattened to a space
            out.append(bad.replace("\xa0", " ") + " tail")
    return out


WORDS = ("the of and to in is you that it he was for on are as with his they at be this from have or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up "
         "other about out many then them these so some her would make like him into time has look two more write "
         "go see number no way could people my than first water been call who oil its now find long down day did "
         "get come made may part café naïve 東京 москва 😂 #tbt @user http://x.co/ab 3.14 don't it's we'll").split()


def long_posts(rng):
    posts = []
    for i in range(20):
        n = rng.randint(500, 900)
        ws = [rng.choice(WORDS) for _ in range(n)]
        if i % 4 == 1:
            ws.insert(rng.randint(0, 5), "a" * rng.randint(200, 2000))
        if i % 4 == 2:
            ws.insert(0, "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEF0123456789") for _ in range(1500)))
        if i % 4 == 3:
            ws.insert(1, "ha" * 400 + "lol" * 100)
        sep = " " if i % 5 else "\n"
        posts.append(sep.join(ws))
    return posts


def random_unicode(rng):
    pools = [
        (30, [(0x20, 0x7E)]),
        (8, [(0xA0, 0xFF)]),
        (2, [(0x80, 0x9F)]),
        (6, [(0x300, 0x36F), (0x483, 0x489), (0x591, 0x5C7), (0x64B, 0x65F), (0x93C, 0x94D), (0x1AB0, 0x1AC0),
             (0x1DC0, 0x1DFF), (0x20D0, 0x20F0), (0xFE20, 0xFE2F), (0x345, 0x345)]),
        (8, [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3400, 0x4DBF)]),
        (8, [(0x1F300, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF), (0x1F3FB, 0x1F3FF), (0x1F1E6, 0x1F1FF),
             (0x200D, 0x200D), (0xFE0F, 0xFE0F), (0x2600, 0x27BF)]),
        (6, [(0x2000, 0x2BFF), (0x2100, 0x214F), (0x2190, 0x22FF), (0x2500, 0x259F), (0x20A0, 0x20C0)]),
        (6, [(0x370, 0x52F), (0x600, 0x6FF), (0x100, 0x24F), (0x250, 0x2FF), (0x1E00, 0x1FFF), (0xE00, 0xE7F)]),
        (3, [(0xFF01, 0xFFEF), (0x3000, 0x303F), (0xFB00, 0xFB4F), (0xFE70, 0xFEFF), (0xFFF0, 0xFFFD)]),
        (2, [(0x1D400, 0x1D7FF), (0x10000, 0x1FFFF), (0x20000, 0x2FA1F), (0xE0000, 0xE007F)]),
        (2, [(0x0, 0x1F), (0x7F, 0x7F), (0x2028, 0x2029), (0x85, 0x85), (0xFEFF, 0xFEFF), (0x1B, 0x1B)]),
        (4, [(0x26, 0x26), (0x3B, 0x3B), (0x23, 0x23), (0x3C, 0x3C), (0x27, 0x27), (0x17F, 0x17F), (0x3A3, 0x3A3),
             (0x130, 0x130), (0xFFFD, 0xFFFD), (0x1A, 0x1A), (0xC3, 0xC3), (0xE2, 0xE2), (0x20AC, 0x20AC)]),
        (1, [(0x0, 0x10FFFF)]),
    ]
    weights = [w for w, _ in pools]
    out = []
    for _ in range(500):
        n = rng.choice([1, 2, 3, 5, 8, 13, 20, 30, 50, 80, 120])
        chars = []
        for _ in range(n):
            _, ranges = rng.choices(pools, weights=weights)[0]
            lo, hi = rng.choice(ranges)
            cp = rng.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0xFFFD
            chars.append(chr(cp))
        out.append("".join(chars))
    return out


EXTRA = [
    "", " ", "a", "!", "A", "0", "'s", "'S", "it's", "IT'S", "we're they've I'm you'll he'd don't", "''s", "!'s",
    "<start_of_text>", "<end_of_text>", "hello <end_of_text> world", "<START_OF_TEXT>", "x<start_of_text>",
    "!<start_of_text>", "<start_of_text", "ΣΑΣ ΟΔΟΣ Σ σΣ ΑΣ. ΑΣ' ΑΣ-", "İ i̇ I ı", "ǅungla", "\x1b[31mred\x1b[0m",
    "\x1b[1;32;٣mx", "numbers 1234567890 ١٢٣ ⅻ ½", "3.14159 -42 +7 1,000,000", "a" * 100, "ab" * 300, "😂" * 100,
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "http://" + "x" * 500 + ".com", "#" + "hashtag" * 50, "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 4,
    "word " * 75, "word " * 74, "word " * 76, "word " * 200,
]

RAW = [b"\xff\xfe bad bytes", b"caf\xe9", b"trunc \xe2\x82", b"\xed\xa0\x80 surrogate", b"\xc0\x80 overlong",
       b"\xf4\x90\x80\x80 too big", b"ok \xe2\x9c\x94 \x80\x81 end", b"\xf0\x9f\x98", b"mix \xc3\x28 paren",
       b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80"]


# ---------------------------------------------------------------------------
# Mark-heavy text: the same words in precomposed (NFC), decomposed (NFD) and
# composite spelling. "Composite" is what Vietnamese keyboards in composite
# mode and the Windows-1258 code page produce: the base letters with
# circumflex, breve or horn are precomposed (â ê ô ă ơ ư, from Latin-1 and
# Latin Extended) and the tone mark follows as a combining character.
VIETNAMESE = [
    "Tiếng Việt có dấu: Hà Nội, Đà Nẵng, Huế, Cần Thơ",
    "Việt Nam là một quốc gia nằm ở phía đông bán đảo Đông Dương",
    "Chúc mừng năm mới! Vạn sự như ý 🎉",
    "Hôm nay trời đẹp quá, đi cà phê không?",
    "Phở bò tái chín, bún chả, bánh mì thịt nướng",
    "Người dân Sài Gòn đổ xổ ra đường xem pháo hoa",
    "Tôi yêu tiếng nước tôi từ khi mới ra đời",
    "Trường Đại học Bách khoa Hà Nội tuyển sinh năm 2024",
    "Ảnh: cậu bé ngồi trên lưng trâu thổi sáo",
    "Bộ trưởng Bộ Y tế phát biểu tại hội nghị",
    "Mưa lũ ở miền Trung khiến hàng nghìn hộ dân bị ngập",
    "Đội tuyển Việt Nam thắng 2-1 trước Thái Lan #AFFCup",
    "quả ổi, quả ớt, quả ướt, ưởng ượng ửng ựa",
    "Ễnh ương ộp oạp ngoài ruộng, ếch nhái ỉ ôi",
    "Nguyễn Thị Minh Khai, Lê Lợi, Trần Hưng Đạo, Hồ Xuân Hương",
    "ĐỊA CHỈ: SỐ 12 NGÕ 34 PHỐ HUẾ, QUẬN HAI BÀ TRƯNG",
    "Cảm ơn bạn rất nhiều ❤️ hẹn gặp lại nhé",
    "Những ngày nắng đẹp nhất là những ngày được ở bên em",
    "Giá xăng tăng 5% từ 15 giờ chiều nay",
    "Thời tiết: sáng sớm có sương mù, trưa nắng gắt",
    "ặ ẳ ẵ ậ ẩ ẫ ệ ể ễ ộ ổ ỗ ợ ở ỡ ự ử ữ ỵ ỷ ỹ ị ỉ ĩ ọ ỏ ụ ủ ũ ạ ả ẹ ẻ ẽ",
    "Ặ Ẳ Ẵ Ậ Ẩ Ẫ Ệ Ể Ễ Ộ Ổ Ỗ Ợ Ở Ỡ Ự Ử Ữ Ỵ Ỷ Ỹ Ị Ỉ Ĩ Ọ Ỏ Ụ Ủ Ũ Ạ Ả Ẹ Ẻ Ẽ",
    "ằ ắ ầ ấ ề ế ồ ố ờ ớ ừ ứ ỳ ý ì í ò ó ù ú à á è é",
    "@bao_moi: Tin nóng – Bão số 3 đổ bộ vào Quảng Ninh https://t.co/xYz",
]

YORUBA = [
    "Ẹ kú àárọ̀, ṣé dáadáa ni?",
    "Èdè Yorùbá jẹ́ èdè tí àwọn ènìyàn ń sọ ní Nàìjíríà",
    "Ọjọ́ ìbí mi ni ọ̀la",
    "Ilé-ẹ̀kọ́ gíga Ọbáfẹ́mi Awólọ́wọ̀",
    "Ọlọ́run á bù kún ọ",
    "Mo fẹ́ràn oúnjẹ ìbílẹ̀: ẹ̀wà, àmàlà, ẹ̀fọ́ rírò",
    "ẸNI TÍ Ó BÁ MỌ̀ Ọ́",
    "ọ̀rọ̀ ẹ̀rọ̀ ọ́ ọ̀ ẹ́ ẹ̀ ṣ̀ ń̄ m̀",
]

MARKS = [
    # Igbo, Navajo, Lithuanian, pinyin, Cyrillic stress marks
    "Ị̀gbò: Ụ̀lọ̀ akwụkwọ ọ̀hụ̀rụ̀, ọ́nụ̄",
    "Diné bizaad: ą́ą́ ę́ę́ į́į́ ǫ́ǫ́ łééʼ, yáʼátʼééh",
    "Lietuvių kalba: ą̃žuolas, ė́da, ų̃, į̃, rañkos",
    "Hànyǔ pīnyīn: lǜsè, nǚrén, lüè, Lǘ, lǚ, lǜ",
    "сло́во, моло́ко, учи́тельница, й и\u0306 ё е\u0308",
    # Polytonic Greek
    "Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν",
    "ᾅδης ᾯ ῷ ᾀ ᾗ Ἄι",
    # Hebrew with niqqud and cantillation, Arabic with harakat
    "בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם וְאֵת הָאָרֶץ",
    "שָׁלוֹם עֲלֵיכֶם, מַה־נִּשְׁמָע?",
    "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ",
    "اَلْعَرَبِيَّةُ لُغَةٌ جَمِيلَةٌ",
    # Indic: nukta letters (composition exclusions), two-part vowel signs
    "क़लम ख़बर ग़ज़ल ज़रूर फ़िल्म ड़ ढ़ य़",
    "ক\u09c7\u09be ক\u09c7\u09d7 কো কৌ য\u09bc",
    "க\u0bc6\u0bbe க\u0bc7\u0bbe க\u0bc6\u0bd7 கொ கோ கௌ",
    "ക\u0d46\u0d3e ക\u0d47\u0d3e ക\u0d46\u0d57 കൊ കോ കൌ",
    "ଓଡ଼ିଆ କ\u0b47\u0b3e କ\u0b47\u0b56 କ\u0b47\u0b57",
    "ಕ\u0cbf\u0cd5 ಕ\u0cc6\u0cc2 ಕ\u0cc6\u0cc2\u0cd5",
    "සිංහල ක\u0dd9\u0dca ක\u0dd9\u0dcf ක\u0dd9\u0dcf\u0dca",
    # Thai, Lao, Tibetan, Burmese, Khmer: stacked vowel and tone marks
    "ทุ่งนา ทุ\u0e48ง ท\u0e48\u0e38ง น้ำ ก็ ปั้น",
    "ພາສາລາວ ນ\u0ec9\u0eb3",
    "བོད་ཡིག་ ཀྲ ཀླ ༀ མ\u0f71\u0f72 མ\u0f72\u0f71",
    "မြန်မာဘာသာ ကျွန်ုပ်",
    "ភាសាខ្មែរ ស្រី",
    # Hangul conjoining jamo, Japanese voiced marks
    "\u1112\u1161\u11ab\u1100\u1173\u11af \u1112\u1161\u11ab\u1100\u1173\u11af",
    "か\u3099き\u3099 は\u309a ヒ\u309a ウ\u3099 ゔ が",
    # Zalgo and long mark runs
    "Z\u0338\u0321\u0322\u0353a\u0337\u0315\u031bl\u0335\u0327g\u0336\u0350o\u0334\u0345 text",
    "e" + "\u0301\u0323\u0302\u0303\u0330\u0331" * 5 + " stacked",
    "a\u0345\u0301\u0313 \u03b1\u0313\u0301\u0345 \u03b1\u0345\u0313\u0301",
    "A\u0328\u0301 \u00c1\u0328 \u0104\u0301 E\u0327\u0306 \u0228\u0306 \u0114\u0327",
]


def vietnamese_composite(text):
    """Windows-1258 style: tone marks (grave, acute, tilde, hook above, dot
    below) stay combining; every other mark is precomposed with its base."""
    import unicodedata
    tones = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}
    out = []
    for ch in text:
        d = unicodedata.normalize("NFD", ch)
        base = "".join(c for c in d if c not in tones)
        out.append(unicodedata.normalize("NFC", base) + "".join(c for c in d if c in tones))
    return "".join(out)


def mark_heavy():
    import unicodedata
    out = []
    for t in VIETNAMESE:
        comp = vietnamese_composite(t)
        try:  # round trip through the code page, as text read from a Windows-1258 file
            comp1258 = comp.encode("cp1258").decode("cp1258")
            assert comp1258 == comp
        except UnicodeEncodeError:
            pass  # emoji and the like: no code page byte
        out += [("vietnamese", unicodedata.normalize("NFC", t)), ("vietnamese", unicodedata.normalize("NFD", t)),
                ("vietnamese", comp)]
    # A whole Windows-1258 file decoded, and UTF-8 bytes decoded as Windows-1258 (mojibake).
    doc = "\n".join(vietnamese_composite(t) for t in VIETNAMESE[:8] if "\U0001f389" not in t)
    out.append(("vietnamese", doc.encode("cp1258").decode("cp1258")))
    out.append(("vietnamese", VIETNAMESE[0].encode("utf-8").decode("cp1258", "replace")))
    for t in YORUBA:
        nfc_t = unicodedata.normalize("NFC", t)
        out += [("yoruba", nfc_t), ("yoruba", unicodedata.normalize("NFD", t))]
        # As typed on a Latin-1 keyboard: the accented vowel precomposed, then
        # the dot below (é + U+0323 for ẹ́).
        accent_first = []
        for c in unicodedata.normalize("NFD", t):
            if accent_first and c in ("\u0300", "\u0301") and accent_first[-1] == "\u0323":
                accent_first.pop()
                accent_first[-1] = unicodedata.normalize("NFC", accent_first[-1] + c)
                accent_first.append("\u0323")
            else:
                accent_first.append(c)
        out.append(("yoruba", "".join(accent_first)))
        # Some orthographies write the vertical line below (U+0329) instead of the dot.
        out.append(("yoruba", unicodedata.normalize("NFD", t).replace("\u0323", "\u0329")))
    for t in MARKS:
        out += [("marks", t), ("marks", unicodedata.normalize("NFD", t)), ("marks", unicodedata.normalize("NFC", t))]
    seen, uniq = set(), []
    for cat, t in out:
        if t not in seen:
            seen.add(t)
            uniq.append((cat, t))
    return uniq


def main():
    rng = random.Random(20240607)
    corpus = []
    corpus += [("social", t) for t in social_posts(rng)]
    corpus += [("scripts", t) for t in SCRIPTS]
    corpus += [("accents", t) for t in ACCENTS]
    corpus += [("html", t) for t in HTML]
    corpus += [("whitespace", t) for t in WHITESPACE]
    corpus += [("long", t) for t in long_posts(rng)]
    corpus += [("mojibake", t) for t in mojibake(rng)]
    corpus += [("extra", t) for t in EXTRA]
    corpus += [("random", t) for t in random_unicode(rng)]
    corpus += mark_heavy()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    counts = {}
    with open(OUT, "w", encoding="utf-8") as f:
        for cat, text in corpus:
            rec = {"cat": cat, "text": text, "ids": reference_ids(text)}
            f.write(json.dumps(rec, ensure_ascii=True) + "\n")
            counts[cat] = counts.get(cat, 0) + 1
        for raw in RAW:
            text = raw.decode("utf-8", "replace")
            rec = {"cat": "raw", "text": text, "raw_b64": base64.b64encode(raw).decode(), "ids": reference_ids(text)}
            f.write(json.dumps(rec, ensure_ascii=True) + "\n")
            counts["raw"] = counts.get("raw", 0) + 1
    print("wrote %s: %s (python %s, open_clip %s, ftfy %s, regex %s)" % (
        OUT, counts, sys.version.split()[0], open_clip.__version__, ftfy.__version__, importlib.metadata.version("regex")))


if __name__ == "__main__":
    main()
