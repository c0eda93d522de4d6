#!/usr/bin/python3
"""track_corpus - hold one personalised copy (track_message's output) to
what its fixture's NAME.expect says, with parsers nobody here wrote
(Python's email package and html.parser) and the tokens read back by
sgadmin:

  track_corpus.py [--tracker URL] [--message ID] INPUT OUTPUT EXPECT RCPT SGADMIN [ARG...]

SGADMIN [ARG...] is the command that decodes a token when "--json token
decode TOKEN" is appended (e.g. "sgadmin -c CONF").  The filters, their
templates and the group are read from INPUT's X-SMTPAPI.

EXPECT (JSON):
  list_unsubscribe  true: List-Unsubscribe and -Post added (the input's own
                    dropped); false: the header as it came, X-SMTPAPI aside
  identical         leaf parts (their index in walk order, multiparts and
                    message/rfc822 not counted) that must leave byte for byte
  parts             one object per other leaf part:
    index, type     the part, and its content type (to catch fixture slips)
    tracked         the links expected through the tracker, in order: the
                    original URL as a browser reads it (entities decoded);
                    with ganalytics on, the utm_* parameters are added here,
                    unless given as {"url": URL, "data": WHAT THE TOKEN HOLDS}
    untouched       HTML: the hrefs of the <a>s left alone, in order (html.parser's
                    decoding); text: strings that must still be there
    pixel, footer, unsub   the open pixel, the footer, the subscription link
                    (the footer's, or where subscriptiontrack.replace stood)
    contains, absent       strings (in the part's charset) that must, or must
                    not, be in the decoded part

What is checked:
  - the output is in canonical form (CRLF only), no line over 998 octets;
    its header is the input's without X-SMTPAPI, DKIM-Signature first,
    List-Unsubscribe and List-Unsubscribe-Post last exactly when expected
    (their tokens: unsubscribe, the recipient, the message's group);
  - the MIME structure is the same (email.walk(): the same content types in
    the same order) and every byte outside the leaf parts' bodies (part
    headers, preambles, delimiters, epilogues) is the same;
  - each leaf part keeps its Content-Transfer-Encoding; quoted-printable
    bodies are valid, their lines at most 76; a rewritten base64 body is in
    lines of at most 76, ending in a line break when it did; the parts
    listed identical are byte for byte;
  - in each part the expectation names: its tracked links (HTML: the
    <a href>s, in order; text: the bare tracker URLs) are TRACKER/c/TOKEN,
    TOKEN decoding to purpose click, the recipient, the group and the
    expected original URL; the links left alone are the expected ones and
    their tags as they were; a tracked link's tag differs only in its href
    value (quoted as it was, or with '"' added); the ASM tags and the replace
    tags became the right URLs (unsubscribe with the group, or 0 for the
    global tag; preferences; the pixel); and with all that put back, the
    part is its input with only the footers and the pixel (as expected)
    inserted just before the last </body> (HTML) or at the end: nothing else
    of its text changed (but for a space that became a line break in a 7bit
    or 8bit line over 998 octets).
One line per failed check; exit 1 on any failure, else print the number of
checks."""
import argparse
import email
import email.policy
import html.parser
import itertools
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

TAG_GROUP = "<%asm_group_unsubscribe_raw_url%>"
TAG_GLOBAL = "<%asm_global_unsubscribe_raw_url%>"
TAG_PREFS = "<%asm_preferences_raw_url%>"
UTM = ["utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign"]
TOKEN_RE = "[A-Za-z0-9_-]+"


class Checker:
    def __init__(self, name):
        self.name = name
        self.checks = 0
        self.failures = []

    def check(self, cond, what):
        self.checks += 1
        if not cond:
            self.failures.append("%s: %s" % (self.name, what))
        return bool(cond)


def canonical(data):
    """the message as track_message reads it: every line end CRLF"""
    data = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def header_fields(block):
    """the fields of a header block (bytes), each with its folding and CRLF"""
    fields = []
    for line in block.split(b"\r\n")[:-1] if block.endswith(b"\r\n") else block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields


def field_name(f):
    return f.split(b":", 1)[0].strip().lower().decode("latin-1")


def entity_split(raw, s, e):
    """an entity raw[s:e]: (header block end, body start)"""
    if raw.startswith(b"\r\n", s):
        return s, s + 2
    i = raw.find(b"\r\n\r\n", s, e)
    if i < 0:
        return e, e
    return i + 2, i + 4


def header_of(block, default="text/plain"):
    m = email.message_from_bytes(block + b"\r\n", policy=email.policy.compat32)
    m.set_default_type(default)
    return m


def raw_walk(raw, s, e, leaves, skel, default="text/plain"):
    """the leaf parts of raw[s:e] (header, body span, parsed header), and
    every other byte of it in skel (a leaf's body as a marker)"""
    he, bs = entity_split(raw, s, e)
    h = header_of(raw[s:he], default)
    skel.append(raw[s:bs])
    ctype = h.get_content_type()
    if h.get_content_maintype() == "multipart" and h.get_boundary():
        b = h.get_boundary().encode("latin-1")
        delims = []  # (line start, line end incl. CRLF, close)
        p = bs
        while p < e:
            nl = raw.find(b"\r\n", p, e)
            le = e if nl < 0 else nl + 2
            line = raw[p:(e if nl < 0 else nl)]
            if line.startswith(b"--" + b):
                rest = line[2 + len(b):]
                close = rest.startswith(b"--")
                if close or rest.strip(b" \t") == b"":
                    delims.append((p, le, close))
                    if close:
                        break
            p = le
        if not delims:
            leaves.append({"hdr": raw[s:he], "span": (bs, e), "h": h})
            skel.append(b"\0LEAF\0")
            return
        skel.append(raw[bs:delims[0][0]])  # preamble
        sub = "message/rfc822" if h.get_content_subtype() == "digest" else "text/plain"
        for (d0, d1, close), nxt in zip(delims, delims[1:] + [None]):
            skel.append(raw[d0:d1])
            if close or nxt is None:
                break
            end = nxt[0] - 2 if raw[nxt[0] - 2:nxt[0]] == b"\r\n" and nxt[0] - 2 >= d1 else nxt[0]
            raw_walk(raw, d1, end, leaves, skel, sub)
            skel.append(raw[end:nxt[0]])
        last = delims[-1]
        skel.append(raw[last[1]:e])  # epilogue (or what follows an unclosed last part)
    elif ctype == "message/rfc822":
        raw_walk(raw, bs, e, leaves, skel)
    else:
        leaves.append({"hdr": raw[s:he], "span": (bs, e), "h": h})
        skel.append(b"\0LEAF\0")


def decoded(leaf, raw):
    body = raw[leaf["span"][0]:leaf["span"][1]]
    m = email.message_from_bytes(leaf["hdr"] + b"\r\n" + body, policy=email.policy.compat32)
    data = m.get_payload(decode=True)
    return data if data is not None else body


def cte_of(h):
    return (h.get("Content-Transfer-Encoding") or "7bit").strip().lower()


def on(settings, key):
    return settings.get(key) in (1, True, "1", "true")


# ---- HTML: the <a href> start tags, by html.parser ----


class ATags(html.parser.HTMLParser):
    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tags = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag != "a":
            return
        href = next((v for k, v in attrs if k == "href"), None)
        if href is None and not any(k == "href" for k, v in attrs):
            return
        line, col = self.getpos()
        self.tags.append({"at": self.starts[line - 1] + col, "text": self.get_starttag_text(),
                          "href": href or ""})

    handle_startendtag = handle_starttag


def href_span(tagtext):
    """the first href's value in a start tag's text: (start, end, quote)"""
    i = 2
    n = len(tagtext)
    while i < n:
        while i < n and tagtext[i] in " \t\r\n\f/":
            i += 1
        if i >= n or tagtext[i] == ">":
            return None
        j = i + 1
        while j < n and tagtext[j] not in " \t\r\n\f/>=":
            j += 1
        name = tagtext[i:j].lower()
        k = j
        while k < n and tagtext[k] in " \t\r\n\f":
            k += 1
        if k < n and tagtext[k] == "=":
            k += 1
            while k < n and tagtext[k] in " \t\r\n\f":
                k += 1
            if tagtext[k] in "\"'":
                q = tagtext[k]
                end = tagtext.index(q, k + 1)
                span = (k, end + 1, q)
                i = end + 1
            else:
                end = k
                while end < n and tagtext[end] not in " \t\r\n\f>":
                    end += 1
                span = (k, end, "")
                i = end
        else:
            span = (j, j, "")
            i = j
        if name == "href":
            return span
    return None


def add_utm(url, ga):
    """url with ganalytics' parameters: those it lacks, before the fragment"""
    base, hashmark, frag = url.partition("#")
    path, qmark, query = base.partition("?")
    have = {kv.split("=", 1)[0] for kv in query.split("&")} if qmark else set()
    add = ["%s=%s" % (n, quote(ga[n], safe="-._~")) for n in UTM
           if ga.get(n) and n not in have]
    if not add:
        return url
    if not qmark:
        base += "?"
    elif not base.endswith(("?", "&")):
        base += "&"
    return base + "&".join(add) + hashmark + frag


def same_ws(a, b):
    """the same, or the same but for a space that became a line break (7bit
    and 8bit lines over 998 octets are broken at spaces)"""
    return a == b or a.replace("\r\n", " ") == b.replace("\r\n", " ")


def ws_regex(s):
    """s as a regex in which any run of white space matches any other"""
    return r"\s+".join(re.escape(w) for w in re.split(r"\s+", s.strip()))


def render_footer(tpl, html_part, url):
    """a subscription footer template with its <% words %> made the link"""
    out = []
    pos = 0
    for m in re.finditer(r"<%(.*?)%>", tpl, re.S):
        out.append(tpl[pos:m.start()])
        words = m.group(1).strip(" \t")
        if html_part:
            out.append('<a href="%s">%s</a>' % (url, words or url))
        else:
            out.append(url)
        pos = m.end()
    out.append(tpl[pos:])
    return "".join(out)


def first_diff(a, b):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return n, repr(a[max(0, n - 60):n + 60]), repr(b[max(0, n - 60):n + 60])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracker", default="https://t.example.net")
    ap.add_argument("--message", default="TRACKTEST")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("expect")
    ap.add_argument("rcpt")
    ap.add_argument("sgadmin", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    tracker = a.tracker.rstrip("/")
    T = re.escape(tracker)
    C = Checker(a.input.rsplit("/", 1)[-1])
    inp = canonical(open(a.input, "rb").read())
    out = open(a.output, "rb").read()
    exp = json.load(open(a.expect))

    # ---- the options, as the sender gave them ----
    m_in = email.message_from_bytes(inp, policy=email.policy.compat32)
    api = json.loads(m_in.get("X-SMTPAPI", "{}"))
    group = int(api.get("asm_group_id", 0) or 0)
    filt = {k: v.get("settings", {}) for k, v in api.get("filters", {}).items()}
    click_on = on(filt.get("clicktrack", {}), "enable")
    open_s = filt.get("opentrack", {})
    sub_s = filt.get("subscriptiontrack", {})
    foot_s = filt.get("footer", {})
    ga_s = filt.get("ganalytics", {})
    ga = ga_s if on(ga_s, "enable") and click_on else None
    open_tag = open_s.get("replace") if on(open_s, "enable") else None
    sub_tag = sub_s.get("replace") if on(sub_s, "enable") else None

    # ---- the tokens, decoded (all at once, a few at a time) ----
    il, isk, ol, osk = [], [], [], []
    raw_walk(inp, 0, len(inp), il, isk)
    raw_walk(out, 0, len(out), ol, osk)
    texts = [out[:entity_split(out, 0, len(out))[0]].decode("latin-1")]
    texts += [decoded(lo, out).decode("latin-1") for lo in ol]
    toks = set()
    for text in texts:
        toks |= set(re.findall(T + "/[cuop]/(" + TOKEN_RE + ")", text))
        toks |= set(re.findall(r"mailto:[^+<>]*\+(" + TOKEN_RE + ")@", text))

    def decode_token(tok):
        r = subprocess.run(a.sgadmin + ["--json", "token", "decode", tok],
                           capture_output=True)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            return None

    with ThreadPoolExecutor(max_workers=3) as pool:
        tokens = dict(zip(sorted(toks), pool.map(decode_token, sorted(toks))))

    def token_ok(tok, purpose, want_group, where):
        if tok not in tokens:
            tokens[tok] = decode_token(tok)
        t = tokens[tok]
        if not C.check(t is not None, "%s: token %s... does not decode" % (where, tok[:16])):
            return None
        C.check(t.get("purpose") == purpose and t.get("recipient") == a.rcpt and
                (want_group is None or t.get("group") == want_group) and
                t.get("message") == a.message,
                "%s: token says %s/%s/group %s/%s, expected %s/%s/group %s/%s" % (
                    where, t.get("purpose"), t.get("recipient"), t.get("group"),
                    t.get("message"), purpose, a.rcpt,
                    "any" if want_group is None else want_group, a.message))
        return t

    # ---- the whole output ----
    C.check(b"\n" not in out.replace(b"\r\n", b"") and b"\r" not in out.replace(b"\r\n", b""),
            "the output has a bare CR or LF")
    long_lines = [i + 1 for i, l in enumerate(out.split(b"\r\n")) if len(l) > 998]
    C.check(not long_lines, "lines over 998 octets: %s" % long_lines[:5])

    # ---- the header ----
    ohe, obs = entity_split(out, 0, len(out))
    ihe, ibs = entity_split(inp, 0, len(inp))
    of = header_fields(out[:ohe])
    inf = header_fields(inp[:ihe])
    nsig = next((i for i, f in enumerate(of) if field_name(f) != "dkim-signature"), len(of))
    C.check(nsig >= 1, "no DKIM-Signature first in the header")
    rest = of[nsig:]
    want_lu = exp.get("list_unsubscribe", False)
    lu = [f for f in rest if field_name(f) in ("list-unsubscribe", "list-unsubscribe-post")]
    keep = [f for f in inf if field_name(f) != "x-smtpapi" and
            not (want_lu and field_name(f) in ("list-unsubscribe", "list-unsubscribe-post"))]
    if want_lu:
        C.check(rest[:-2] == keep and [field_name(f) for f in rest[-2:]] ==
                ["list-unsubscribe", "list-unsubscribe-post"],
                "header: expected the input's fields without X-SMTPAPI, then "
                "List-Unsubscribe and List-Unsubscribe-Post; got %r" % [field_name(f) for f in rest])
        if lu:
            v = lu[0].decode("latin-1")
            mt = re.search("<" + T + "/u/(" + TOKEN_RE + ")>", v)
            mm = re.search(r"<mailto:[^+<>]+\+(" + TOKEN_RE + ")@[^<>]+>", v)
            if C.check(mt and mm, "List-Unsubscribe lacks the https or mailto URI: %r" % v):
                token_ok(mt.group(1), "unsubscribe", group, "List-Unsubscribe https")
                token_ok(mm.group(1), "unsubscribe", group, "List-Unsubscribe mailto")
    else:
        C.check(rest == keep, "header: expected the input's fields without X-SMTPAPI; got %r"
                % [field_name(f) for f in rest])
    C.check(b"x-smtpapi:" not in out[:ohe].lower(), "X-SMTPAPI left in the header")

    # ---- the structure ----
    m_out = email.message_from_bytes(out, policy=email.policy.compat32)
    ti = [p.get_content_type() for p in m_in.walk()]
    to = [p.get_content_type() for p in m_out.walk()]
    C.check(ti == to, "MIME structure differs: %s, now %s" % (ti, to))
    nleaf = sum(1 for p in m_in.walk() if not p.is_multipart())
    C.check(len(il) == nleaf, "fixture: %d leaves by the email package, %d by the raw walk"
            % (nleaf, len(il)))
    if not C.check(len(il) == len(ol), "%d leaf parts, now %d" % (len(il), len(ol))):
        return report(C)
    if not C.check(isk[1:] == osk[1:], "bytes outside the parts' bodies changed (part "
                   "headers, preambles, delimiters, epilogues): first at %s" %
                   next((i for i, (x, y) in enumerate(zip(isk[1:], osk[1:])) if x != y), "end")):
        for x, y in zip(isk[1:], osk[1:]):
            if x != y:
                C.failures.append("    was %r\n    now %r" % (x[:300], y[:300]))
                break

    parts = {p["index"]: p for p in exp.get("parts", [])}
    identical = set(exp.get("identical", []))
    C.check(set(parts) | identical == set(range(len(il))) and not set(parts) & identical,
            "fixture: the expectation must name each of the %d parts once (parts %s, "
            "identical %s)" % (len(il), sorted(parts), sorted(identical)))
    for i, (li, lo) in enumerate(zip(il, ol)):
        where = "part %d (%s)" % (i, li["h"].get_content_type())
        cte = cte_of(li["h"])
        C.check(cte == cte_of(lo["h"]), "%s: Content-Transfer-Encoding %s became %s"
                % (where, cte, cte_of(lo["h"])))
        bi = inp[li["span"][0]:li["span"][1]]
        bo = out[lo["span"][0]:lo["span"][1]]
        if cte == "quoted-printable":
            lines = bo.split(b"\r\n")
            C.check(all(len(l) <= 76 for l in lines), "%s: quoted-printable lines over 76: %s"
                    % (where, [len(l) for l in lines if len(l) > 76][:5]))
            C.check(not re.search(rb"=(?![0-9A-F]{2}|\r\n|$)", bo), "%s: a malformed '=' in "
                    "the quoted-printable body" % where)
            C.check(not re.search(rb"[ \t](\r\n|$)", bo), "%s: white space at a "
                    "quoted-printable line's end" % where)
        if cte == "7bit":
            C.check(all(c < 128 and c != 0 for c in bo), "%s: 8-bit data in a 7bit part" % where)
        if i in identical or (i in parts and not parts[i].get("changed", True)):
            C.check(bi == bo, "%s: must be byte for byte as it came" % where)
            continue
        if i not in parts:
            continue
        e = parts[i]
        C.check(li["h"].get_content_type() == e["type"], "fixture: %s is not %s"
                % (where, e["type"]))
        if not C.check(bi != bo, "%s: expected it rewritten, it is as it came" % where):
            continue
        if cte == "base64":
            lines = bo.split(b"\r\n")
            C.check(all(len(l) <= 76 and re.fullmatch(rb"[A-Za-z0-9+/=]*", l) for l in lines),
                    "%s: base64 lines over 76 or with other characters" % where)
            C.check(bi.endswith(b"\r\n") == bo.endswith(b"\r\n"), "%s: the base64 body "
                    "ended %s a line break, now %s" % (where, *(("with", "without")[not x]
                                                          for x in (bi.endswith(b"\r\n"),
                                                                    bo.endswith(b"\r\n")))))
        check_part(C, e, where, li["h"], decoded(li, inp), decoded(lo, out), cte, tracker,
                   group, token_ok, ga, open_tag, sub_tag, sub_s, foot_s)
    return report(C)


def check_part(C, e, where, h, din, dout, cte, tracker, group, token_ok, ga, open_tag,
               sub_tag, sub_s, foot_s):
    T = re.escape(tracker)
    charset = h.get_content_charset() or "us-ascii"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"
    is_html = h.get_content_subtype() == "html"
    tin = din.decode("latin-1")
    tout = dout.decode("latin-1")

    def enc(s):
        return s.encode(charset).decode("latin-1")

    def show(s):
        return s.encode("latin-1").decode(charset, "replace")

    for s in e.get("contains", []):
        C.check(enc(s) in tout, "%s: lacks %r" % (where, s))
    for s in e.get("absent", []):
        C.check(enc(s) not in tout, "%s: still has %r" % (where, s))

    want = []
    for t in e.get("tracked", []):
        if isinstance(t, dict):
            want.append((t["url"], t["data"]))
        else:
            want.append((t, add_utm(t, ga) if ga else t))

    got = []
    edits_in, edits_out = [], []
    if is_html:
        ain = ATags(tin).tags
        aout = ATags(tout).tags
        untouched = []
        C.check(len(aout) >= len(ain), "%s: %d <a href> tags, now %d" % (where, len(ain), len(aout)))
        for n, (ti, to) in enumerate(zip(ain, aout)):
            w = "%s link %d" % (where, n)
            if ti["text"] == to["text"] or \
                    ti["text"].replace("\r\n", " ") == to["text"].replace("\r\n", " "):
                untouched.append(to["href"])
            elif to["href"].startswith(tracker + "/c/"):
                tok = to["href"][len(tracker) + 3:]
                t = token_ok(tok, "click", group, w)
                got.append(t.get("data") if t else None)
                si, so = href_span(ti["text"]), href_span(to["text"])
                q = si[2] or '"'
                C.check(so[2] == q, "%s: the tracked href is quoted with %r, expected %r"
                        % (w, so[2], q))
                C.check(same_ws(ti["text"][:si[0]], to["text"][:so[0]]) and
                        same_ws(ti["text"][si[1]:], to["text"][so[1]:]),
                        "%s: the tag changed beyond its href: %r, now %r"
                        % (w, ti["text"], to["text"]))
                edits_in.append((ti["at"] + si[0], ti["at"] + si[1], q + "@C@" + q))
                edits_out.append((to["at"] + so[0], to["at"] + so[1], q + "@C@" + q))
            elif to["href"].startswith(tracker + "/"):
                C.check(any(x in ti["href"] for x in (TAG_GROUP, TAG_GLOBAL, TAG_PREFS,
                                                      sub_tag or "\0")),
                        "%s: href %r became a tracker URL %r" % (w, ti["href"], to["href"][:60]))
            else:
                untouched.append(to["href"])
                C.check(False, "%s: a link left alone has a changed tag: %r, now %r"
                        % (w, ti["text"], to["text"]))
        for to in aout[len(ain):]:
            C.check(to["href"].startswith(tracker + "/u/"), "%s: an added link that is not "
                    "the unsubscribe link: %r" % (where, to["text"]))
        C.check(untouched == e.get("untouched", []), "%s: links left alone %s, expected %s"
                % (where, untouched, e.get("untouched", [])))
    else:
        for m in re.finditer(T + "/c/(" + TOKEN_RE + ")", tout):
            t = token_ok(m.group(1), "click", group, "%s URL %d" % (where, len(got)))
            got.append(t.get("data") if t else None)
            edits_out.append((m.start(), m.end(), "@C@"))
        pos = 0
        for url, _ in want:
            k = tin.find(enc(url), pos)
            if not C.check(k >= 0, "fixture: %s has no %r after offset %d" % (where, url, pos)):
                break
            edits_in.append((k, k + len(enc(url)), "@C@"))
            pos = k + len(enc(url))
        for s in e.get("untouched", []):
            C.check(enc(s) in tout and enc(s) in tin, "%s: %r is not there as it was"
                    % (where, s))
    C.check(got == [d for _, d in want], "%s: tracked links give %r, expected %r"
            % (where, got, [d for _, d in want]))

    # ---- the part with all that put back: only the insertions may differ ----
    def apply(text, edits):
        for s, x, w in sorted(edits, reverse=True):
            text = text[:s] + w + text[x:]
        return text

    nin = apply(tin, edits_in)
    nout = apply(tout, edits_out)
    for tag, ph in ((TAG_GROUP, "@U:%d@" % group), (TAG_GLOBAL, "@U:0@"),
                    (TAG_PREFS, "@P:%d@" % group)):
        nin = nin.replace(tag, ph)
    had_sub_tag = bool(sub_tag) and enc(sub_tag) in nin
    if sub_tag:
        nin = nin.replace(enc(sub_tag), "@U:%d@" % group)
    had_open_tag = bool(open_tag) and is_html and enc(open_tag) in nin
    if open_tag and is_html:
        nin = nin.replace(enc(open_tag), "@O:%d@" % group)

    def pixel(m):
        t = token_ok(m.group(1), "open", group, where + " pixel")
        return "@O:%s@" % (t.get("group") if t else "?")

    def url(m):
        kind = {"u": "unsubscribe", "p": "preferences"}[m.group(1)]
        t = tokens_group(m.group(2), kind)
        return "@%s:%s@" % (m.group(1).upper(), t)

    def tokens_group(tok, kind):
        # the group is what placed it (the message's, or 0 for the global tag)
        t = token_ok(tok, kind, None, where + " " + kind + " URL")
        return t.get("group") if t else "?"

    nout = re.sub(r'<img\s+src="' + T + "/o/(" + TOKEN_RE + r')"[^>]*>', pixel, nout)
    nout = re.sub(T + "/([up])/(" + TOKEN_RE + ")", url, nout)
    C.check(nout.count(tracker) == nin.count(tracker), "%s: a tracker URL not accounted "
            "for: %r" % (where, nout[max(0, nout.find(tracker) - 80):nout.find(tracker) + 80]))

    pieces = []
    if e.get("unsub") and not sub_tag:
        tpl = sub_s.get("text/html" if is_html else "text/plain")
        pieces.append(ws_regex(render_footer(tpl, is_html, "@U:%d@" % group)) if tpl
                      else r"[\s\S]*@U:%d@[\s\S]*" % group)
    if e.get("footer"):
        pieces.append(ws_regex(enc(foot_s.get("text/html" if is_html else "text/plain", ""))))
    if e.get("pixel") and is_html and not had_open_tag:
        pieces.append(re.escape("@O:%d@" % group))
    if e.get("unsub") and sub_tag:
        C.check(had_sub_tag, "%s: expected the unsubscribe link where %r is, it is not in "
                "the part" % (where, sub_tag))
    if e.get("pixel") and had_open_tag:
        C.check("@O:%d@" % group in nout, "%s: no pixel for %r" % (where, open_tag))
    if not e.get("pixel"):
        C.check("@O:" not in nout, "%s: a pixel, none expected" % where)

    def split(nin, nout):
        k = nin.lower().rfind("</body>") if is_html else -1
        if k < 0:
            # no </body>: at the end, before the HTML part's last line end
            k = len(nin) - 2 if is_html and nin.endswith("\r\n") else len(nin)
        if len(nout) < len(nin) or not nout.startswith(nin[:k]) or \
                not nout.endswith(nin[k:]):
            return None
        return nout[k:len(nout) - (len(nin) - k)]

    ins = split(nin, nout)
    if ins is None and cte in ("7bit", "8bit"):
        # a line over 998 octets may be broken where it had a space
        ins = split(nin.replace("\r\n", " "), nout.replace("\r\n", " "))
    if not C.check(ins is not None, "%s: the text changed beyond its links, tags, footers "
                   "and pixel: at %d, input %s, output %s" % (
                       (where,) + first_diff(show(nin), show(nout)))):
        return
    ok = ins == "" if not pieces else any(
        re.fullmatch(r"\s*" + r"\s*".join(p) + r"\s*", ins)
        for p in itertools.permutations(pieces))
    C.check(ok, "%s: inserted %r, expected %s" % (
        where, ins[:400], " and ".join(x for x in ("unsubscribe footer" if e.get("unsub") and
                                                    not sub_tag else "",
                                                    "footer" if e.get("footer") else "",
                                                    "pixel" if e.get("pixel") and is_html
                                                    and not had_open_tag else "") if x)
        or "nothing"))


def report(C):
    for f in C.failures:
        print(f)
    if C.failures:
        return 1
    print("%s: %d checks" % (C.name, C.checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
