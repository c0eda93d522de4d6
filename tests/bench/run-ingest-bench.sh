#!/bin/sh
# run-ingest-bench - "sgadmin ingest"'s bar: a mixed corpus of N (10000)
#   DSNs, text bounces, feedback (ARF) reports and replies, fed one message
#   per process as Postfix's pipe(8) feeds it, at least 200 messages/s on one
#   core; beside Sisimai (Debian's libsisimai-perl, the reference bounce
#   parser) parsing the same corpus on the same core in the same run.
# The corpus (generated untimed, python3, seeded: the same N gives the same
#   mix; tests/fixtures/bounces are the shapes), in a shuffled order:
#     40 % Postfix RFC 3464 DSNs (after postfix-user-unknown.eml): hard
#          550 5.1.1 (60 %), soft 552 5.2.2 (25 %), block 554 5.7.1 (15 %);
#          one recipient, or two (30 % of those without a token);
#     20 % Exim and qmail text bounces (exim-user-unknown, exim-mailbox-full,
#          qmail-no-mailbox, qmail-rejected-spam: hard, soft, hard, block);
#     15 % Gmail and Office 365 / Outlook.com DSNs (gmail-nosuchuser,
#          gmail-dmarc-block, office365-recipientnotfound,
#          office365-dmarc-5.7.509, outlookcom-mailbox-unavailable);
#     15 % ARF abuse reports (arf-yahoo-abuse) whose enclosed original
#          carries a List-Unsubscribe unsubscribe token (group 1) naming the
#          recipient; half of them redacted (no Original-Rcpt-To, To:
#          redacted@...), so that only the token names the recipient;
#     10 % replies: auto-replies (the four autoreply-* fixtures, 80 %) and
#          a human reply (none-human-reply, 20 %).
#   Every message has its own recipient (userI@exampleK.org, 40 domains) and
#   Message-ID.  70 % of the bounces and auto-replies are addressed
#   (envelope) to bounces+TOKEN@shop.example, TOKEN a real return-path
#   token (tests/integration/token_make, minted untimed) naming the
#   recipient, also in the report's own To:/Delivered-To:; the rest to
#   bounces@shop.example with no token (the fixtures' fake /u/ tokens in
#   the returned originals do not decrypt): for their recipients the event
#   log (STORE/events/YYYY-MM-DD.jsonl, UTC today) holds a "processed"
#   event, so they are matched by sent mail, shuffled among EVENTS (50000)
#   unrelated processed events (half of them at the corpus's domains, so
#   the scan parses them).  The store: a token key ("sgadmin token
#   generate"), group 1 ("groups create --name News"), sendguard.conf with
#   store.path and secrets.token_key_file only (feedback.match_window 7d).
# What is timed:
#   (A) sgadmin_ingest: for each message, in corpus order, one process as
#       pipe(8) runs it: "sgadmin -c CONF ingest --recipient ENVELOPE <FILE"
#       (stdout to /dev/null, stderr to a log), started by a small python3
#       driver with os.posix_spawn and waited for before the next; every
#       exit status must be 0.  The store and the event log are restored
#       from a snapshot before every run, so every round does the same work.
#   (A2) sgadmin_ingest_pipe: the same with PARALLEL (4) processes at a time,
#       as pipe(8) runs deliveries (up to the sgingest transport's
#       destination concurrency limit, default 20) while one waits for its
#       fsync (on one core it gains nothing: the CPU is the limit); the bar
#       holds both A and A2.
#   (B) sisimai_one_process: one perl process, Sisimai->make on each file's
#       content in memory (as tests/integration/bounce_sisimai.pl, with
#       delivered => 1, vacation => 1), reading the files inside the timing;
#       sisimai_per_message: one "perl sisimai1.pl <FILE" process per
#       message, the same driver, for SAMPLE (500) messages evenly spread
#       over the corpus: like with like with (A).
#   All of it under "taskset -c CPU" (0): the driver and every child on one
#   core.  Figures: messages / wall seconds of the whole loop; the children's
#   CPU time (wait4) per message; per-message wall time p50/p99, for (A)
#   also by how the message is matched (envelope token, token in the
#   enclosed original, by sent mail: the event-log scan, none).  exec_floor:
#   the driver starting /bin/true per message (min(N, 2000)), what a process
#   costs at all here.
# Rounds: an untimed warm-up (every file read once; WARMUP (50) ingests into
#   a scratch copy; one Sisimai process), then ROUNDS (1) rounds of A and B,
#   the first alternating (odd rounds A first); the medians per
#   configuration; the bar holds the medians of A and A2: >= BAR (200) msgs/s.
# Checked after every run of A (else the figure is not one of real work):
#   no failed ingest; "sgadmin --json bounces list --limit 500" lists hard
#   bounces; "spam-reports list" is not empty; the event log's bounce events
#   (by bounce_type hard/soft/block), spamreport and unmatched events are
#   exactly what the corpus implies, each bounce and spamreport event for
#   an address of the corpus with the class generated for it (the counts
#   are printed; up to 5 differences are named).
# Usage: tests/bench/run-ingest-bench.sh   (from the build or the source
#   directory, as any user; every file lives under one mktemp -d directory,
#   removed on exit; no ports)
# Environment: SGADMIN, TOKEN_MAKE (default sgadmin/sgadmin,
#   tests/integration/token_make under SG_TOP_BUILDDIR or the top
#   directory; the bench runs copies), N (10000), EVENTS (50000), SAMPLE
#   (500), ROUNDS (1), WARMUP (50), CPU (0), BAR (200), PARALLEL (4), SEED (1),
#   PY (/usr/bin/python3), KEEP=1 keeps the work directory.
# Output: "# " lines are commentary (the machine, the corpus mix, Sisimai's
#   reading of it); then one "run config=NAME round=R msgs=.. seconds=..
#   msgs_per_s=.. ms_per_msg=.. cpu_ms_per_msg=.. p50_ms=.. p99_ms=..
#   failures=.." line per run, "sanity round=R ..." lines, "median
#   config=NAME msgs_per_s=.." lines, "ratio A/B=.." lines, and last
#   "bar sgadmin_ingest_msgs_per_s>=200 and sgadmin_ingest_pipe_... PASS|FAIL".  Exit status: 0 when
#   the bar holds with no failed ingest and the sanity checks pass, 1 when
#   not, 2 when the bench could not run, 77 when python3, perl's Sisimai
#   or taskset is missing (apt-get install python3 libsisimai-perl
#   util-linux).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SG_TOP_BUILDDIR:-$top}
SGADMIN=${SGADMIN:-$build/sgadmin/sgadmin}
TOKEN_MAKE=${TOKEN_MAKE:-$build/tests/integration/token_make}
FIXTURES=${FIXTURES:-$top/tests/fixtures/bounces}
N=${N:-10000}
EVENTS=${EVENTS:-50000}
SAMPLE=${SAMPLE:-500}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-50}
CPU=${CPU:-0}
BAR=${BAR:-200}
PARALLEL=${PARALLEL:-4}
SEED=${SEED:-1}
PY=${PY:-/usr/bin/python3}
PERL=${PERL:-perl}

die() { echo "run-ingest-bench: $*" >&2; exit 2; }
skip() { echo "run-ingest-bench: SKIP: $*" >&2; exit 77; }

# --- the tools ------------------------------------------------------------------
[ -x "$PY" ] || skip "no $PY (the corpus, the driver, the checks): apt-get install python3"
"$PY" -c 'import os; os.posix_spawn; os.POSIX_SPAWN_OPEN' 2>/dev/null ||
    skip "$PY has no os.posix_spawn (python 3.8 or later)"
"$PERL" -MSisimai -e 1 2>/dev/null || skip "no perl Sisimai: apt-get install libsisimai-perl"
command -v taskset >/dev/null 2>&1 || skip "no taskset: apt-get install util-linux"
for t in awk sed sort cp sha256sum; do
    command -v "$t" >/dev/null 2>&1 || skip "no $t command"
done
x=
for v in N EVENTS SAMPLE ROUNDS WARMUP CPU BAR SEED; do
    eval "x=\$$v"
    case $x in '' | *[!0-9]*) die "$v=$x is not a number" ;; esac
done
if [ "$N" -lt 20 ] || [ "$ROUNDS" -lt 1 ] || [ "$SAMPLE" -lt 1 ]; then
    die "need N >= 20, ROUNDS >= 1, SAMPLE >= 1"
fi
[ "$SAMPLE" -le "$N" ] || SAMPLE=$N
taskset -c "$CPU" true 2>/dev/null || die "taskset -c $CPU does not work here (CPU=$CPU)"
[ -d "$FIXTURES" ] || die "no fixtures at $FIXTURES"
for b in "$SGADMIN" "$TOKEN_MAKE"; do
    [ -x "$b" ] || die "no $b (build it first: make sgadmin/sgadmin tests/integration/token_make)"
done

work=$(mktemp -d /tmp/sg-ingest-bench-XXXXXX)
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "# kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# copies: a rebuild during the run must not change what is measured
mkdir "$work/bin"
id_of() { echo "$1 $(wc -c <"$1") bytes, sha256 $(sha256sum "$1" | cut -c1-12)"; }
sgadmin_id=$(id_of "$SGADMIN")
cp "$SGADMIN" "$work/bin/sgadmin"
cp "$TOKEN_MAKE" "$work/bin/token_make"
SGADMIN=$work/bin/sgadmin
TOKEN_MAKE=$work/bin/token_make
rc=0
"$SGADMIN" -Z >/dev/null 2>&1 </dev/null || rc=$?
[ "$rc" -eq 64 ] || die "$SGADMIN -Z exited $rc, not 64 (usage): a broken binary (being rebuilt?)"

median() {
    sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'; }

# --- sendguard: configuration, token key, group 1 ---------------------------------
SG=$work/sg
mkdir -p "$SG/store"
CONF=$SG/sendguard.conf
cat >"$CONF" <<EOF
store = { path = "$SG/store"; };
secrets = { token_key_file = "$SG/token.key"; };
EOF
"$SGADMIN" -c "$CONF" token generate >"$work/setup.out" 2>&1 ||
    die "sgadmin token generate failed: $(cat "$work/setup.out")"
"$SGADMIN" -c "$CONF" --json groups create --name News >"$work/group.json" 2>"$work/setup.out" ||
    die "sgadmin groups create failed: $(cat "$work/setup.out")"
GID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/group.json")
[ "$GID" = 1 ] || die "the group News is $GID, not 1"

# --- the helpers --------------------------------------------------------------------
# gen.py FIXTURES OUT N EVENTS SEED TOKEN_MAKE KEYFILE STORE JOBS: the corpus
# (OUT/corpus/NNNNN.eml, OUT/list.tsv "FILE<TAB>ENVELOPE<TAB>PATH", PATH how
# it is matched: envelope-token, original-token, sent-mail-match, reply-no-token), what ingesting it
# must record (OUT/expect.json), the seeded event log; the mix on stdout
cat >"$work/gen.py" <<'EOF'
import concurrent.futures, json, os, random, re, subprocess, sys, textwrap, time

fixtures, out, n, nevents, seed, token_make, keyfile, store, jobs = sys.argv[1:10]
n, nevents, seed, jobs = int(n), int(nevents), int(seed), int(jobs)
rng = random.Random(seed)
ndom = 40

def fixture(name):
    with open(os.path.join(fixtures, name + ".eml"), encoding="utf-8") as f:
        return f.read()

# kind: (template, address in the fixture, classes of its recipient)
TEXT = [("exim-user-unknown", "liam@example.org", "hard"),
        ("exim-mailbox-full", "mia@example.net", "soft"),
        ("qmail-no-mailbox", "olivia@example.org", "hard"),
        ("qmail-rejected-spam", "paul@example.net", "block")]
WEB = [("gmail-nosuchuser", "bob@example.com", "hard"),
       ("gmail-dmarc-block", "dave@example.net", "block"),
       ("office365-recipientnotfound", "bob@contoso.example", "hard"),
       ("office365-dmarc-5.7.509", "erin@fabrikam.example", "block"),
       ("outlookcom-mailbox-unavailable", "ivy@hotmail.example", "hard")]
REPLIES = [("autoreply-vacation-rfc3834", "jack@example.org", "autoreply"),
           ("autoreply-exchange-automatic-reply", "karen@example.com", "autoreply"),
           ("autoreply-out-of-office-precedence", "lena@example.net", "autoreply"),
           ("autoreply-german-abwesenheit", "max.mustermann@example.net", "autoreply"),
           ("none-human-reply", "mia@example.com", "none")]
templates = {name: fixture(name) for name, _, _ in TEXT + WEB + REPLIES}
templates["arf-yahoo-abuse"] = fixture("arf-yahoo-abuse")
for name, addr, _ in TEXT + WEB + REPLIES:
    if addr.lower() not in templates[name].lower():
        sys.exit(f"gen.py: {name}.eml does not name {addr}: the fixture changed")

MIX = [("postfix", 40), ("text", 20), ("webmail", 15), ("arf", 15), ("replies", 10)]
counts = [n * share // 100 for _, share in MIX]
for i in range(n - sum(counts)):
    counts[i % len(counts)] += 1
kinds = [k for (k, _), c in zip(MIX, counts) for _ in range(c)]
rng.shuffle(kinds)

def addr(i, suffix=""):
    return f"user{i}{suffix}@example{rng.randrange(ndom)}.org"

def sub_ci(text, old, new):
    return re.sub(re.escape(old), lambda m: new, text, flags=re.I)

def split_head(text):
    h, sep, b = text.partition("\n\n")
    return h, sep + b

def new_message_id(text, i):
    h, b = split_head(text)
    h, k = re.subn(r"(?mi)^(Message-I[Dd]:[ \t]*)<[^>\n]*>", lambda m: m.group(1) + f"<bench.{i}.{rng.randrange(1 << 30):x}@report.example>", h, count=1)
    return h + b

def envelope_into_head(text, env):
    """the report's own To:/Delivered-To:/for <...> name the envelope address"""
    h, b = split_head(text)
    for old in ("bounces@shop.example", "news@shop.example"):
        h = h.replace(old, env)
    return h + b

POSTFIX = {
    "hard": ("550 5.1.1", "5.1.1", "<{a}>: Recipient address rejected: User unknown in virtual mailbox table"),
    "soft": ("552 5.2.2", "5.2.2", "<{a}>: Mailbox full, quota exceeded (over its storage allocation)"),
    "block": ("554 5.7.1", "5.7.1", "Service unavailable; Client host [198.51.100.25] blocked using dnsbl.example.net; https://dnsbl.example.net/query?ip=198.51.100.25"),
}

def postfix_dsn(i, rcpts, sender):
    qid = f"4Q{i:06X}z9vY"
    bnd = f"{qid}.{1796720410 + i}/mail.shop.example"
    notes, reports = [], []
    for a, cls in rcpts:
        code, status, text = POSTFIX[cls]
        text = text.format(a=a)
        dom = a.split("@")[1]
        line = (f"<{a}>: host mx.{dom}[192.0.2.10] said: {code} {text} "
                "(in reply to RCPT TO command)")
        notes.append("\n    ".join(textwrap.wrap(line, 66, break_long_words=False,
                                                 break_on_hyphens=False)))
        diag = "\n    ".join(textwrap.wrap(f"smtp; {code} {text}", 76, break_long_words=False,
                                           break_on_hyphens=False))
        reports.append(f"Final-Recipient: rfc822; {a}\nOriginal-Recipient: rfc822;{a}\n"
                       f"Action: failed\nStatus: {status}\nRemote-MTA: dns; mx.{dom}\n"
                       f"Diagnostic-Code: {diag}\n")
    to = rcpts[0][0]
    return f"""Return-Path: <>
Delivered-To: {sender}
Received: by mail.shop.example (Postfix)
	id {qid}; Mon,  7 Dec 2026 10:02:13 +0000 (UTC)
Date: Mon,  7 Dec 2026 10:02:13 +0000 (UTC)
From: MAILER-DAEMON@mail.shop.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {sender}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{bnd}"
Content-Transfer-Encoding: 8bit
Message-Id: <{qid}.{i}@mail.shop.example>

This is a MIME-encapsulated message.

--{bnd}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.shop.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

{chr(10).join(notes)}

--{bnd}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.shop.example
X-Postfix-Queue-ID: {qid}
X-Postfix-Sender: rfc822; {sender}
Arrival-Date: Mon,  7 Dec 2026 10:02:11 +0000 (UTC)

{chr(10).join(reports)}
--{bnd}
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

Return-Path: <{sender}>
Received: from app1.internal.shop.example (app1.internal.shop.example [10.20.0.11])
	by mail.shop.example (Postfix) with ESMTP id {qid}
	for <{to}>; Mon,  7 Dec 2026 10:02:11 +0000
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.example;
	s=sg2026; t=1796720400;
	h=from:to:subject:date:message-id:list-unsubscribe:
	 list-unsubscribe-post:mime-version:content-type;
	bh=rVT1YwBUUXwwb0Sjy1Dkma1jwwa3fIG2WC2yu7iz1aw=;
	b=Xm12+/xmZmC2GuSLFJ7G1sheaK0LLblnOK3UCNXHYQQqWTzwfh1BQ6y8BYfCh0+yxB4o
	 siORTpQ8k9zY1BPbuWAgydijqxVq8jbE7Nq/89sXxSjDpF+ZWcpAPTYg40w7fSxWY+E9
	 2g==
List-Unsubscribe: <mailto:unsubscribe@shop.example?subject=unsubscribe>
From: Shop Example <news@shop.example>
To: {to}
Subject: Your December picks are here
Date: Mon,  7 Dec 2026 10:02:11 +0000
Message-ID: <{1796720400 + i}.{qid}@shop.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hello,

Our December picks are in: warm wool socks, the new cast-iron pan (39 EUR) and
a 15 % discount on everything in the winter range until Sunday.

See them all at https://shop.example/december

Kind regards,
The Shop Example team

--{bnd}--
"""

# the plan: per message its kind, recipients and classes, whether it has a token
plan = []
for i, kind in enumerate(kinds):
    p = {"i": i, "kind": kind, "token": False, "rcpts": [], "variant": kind}
    if kind == "postfix":
        p["token"] = rng.random() < 0.70
        k = 1 if p["token"] or rng.random() >= 0.30 else 2
        for j in range(k):
            r = rng.random()
            p["rcpts"].append((addr(i, "" if j == 0 else "b"),
                               "hard" if r < 0.60 else "soft" if r < 0.85 else "block"))
    elif kind in ("text", "webmail"):
        p["token"] = rng.random() < 0.70
        name, _, cls = rng.choice(TEXT if kind == "text" else WEB)
        p["variant"] = name
        p["rcpts"].append((addr(i), cls))
    elif kind == "arf":
        p["token"] = True    # the List-Unsubscribe one, in the enclosed original
        p["redacted"] = rng.random() < 0.5
        p["variant"] = "arf-yahoo-abuse" + ("-redacted" if p["redacted"] else "")
        p["rcpts"].append((addr(i), "arf"))
    else:
        r = rng.random()
        name, _, cls = REPLIES[min(int(r * 5), 4)]
        p["variant"] = name
        p["token"] = cls == "autoreply" and rng.random() < 0.70
        p["rcpts"].append((addr(i), cls))
    plan.append(p)

# the tokens, minted before anything is timed
specs = []
for p in plan:
    a = p["rcpts"][0][0]
    if p["token"] and p["kind"] == "arf":
        specs.append(("unsubscribe", "default", a, "1", "-"))
    elif p["token"]:
        specs.append(("return-path", "default", a, "0", f"bench.{p['i']}@shop.example"))
def mint(spec):
    return subprocess.run([token_make, keyfile] + list(spec), check=True,
                          capture_output=True, text=True).stdout.strip()
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
    minted = dict(zip(specs, ex.map(mint, specs)))
t_mint = time.time() - t0

os.makedirs(f"{out}/corpus", exist_ok=True)
lst = open(f"{out}/list.tsv", "w")
expect = {}        # address -> class (hard, soft, block, arf)
unmatched = 0
seeds = []
by_variant = {}
sizes = 0
for p in plan:
    i, kind = p["i"], p["kind"]
    a = p["rcpts"][0][0]
    tok = None
    if p["token"]:
        tok = minted[("unsubscribe", "default", a, "1", "-") if kind == "arf" else
                     ("return-path", "default", a, "0", f"bench.{i}@shop.example")]
    env = f"bounces+{tok}@shop.example" if tok and kind != "arf" else "bounces@shop.example"
    if kind == "postfix":
        text = postfix_dsn(i, p["rcpts"], env)
    elif kind in ("text", "webmail", "replies"):
        name = p["variant"]
        old = next(x[1] for x in TEXT + WEB + REPLIES if x[0] == name)
        text = sub_ci(templates[name], old, a)
        text = new_message_id(text, i)
        if tok:
            text = envelope_into_head(text, env)
    else:
        env = "fbl@shop.example"
        text = templates["arf-yahoo-abuse"]
        text = re.sub(r"bounces\+\{\{TOKEN return-path [^}]*\}\}@shop\.example",
                      "bounces@shop.example", text)
        text = re.sub(r"(?m)^X-Sendguard-Token: .*\n", "", text)
        text = re.sub(r"\{\{TOKEN unsubscribe [^}]*\}\}", tok, text)
        if "{{TOKEN" in text:
            sys.exit("gen.py: arf-yahoo-abuse.eml has a placeholder this bench does not know")
        dom = a.split("@")[1]
        if p["redacted"]:
            text = re.sub(r"(?m)^Original-Rcpt-To: .*\n", "", text)
            text = sub_ci(text, "alice@yahoo.example", f"redacted@{dom}")
        else:
            text = sub_ci(text, "alice@yahoo.example", a)
        text = new_message_id(text, i)
    for r, cls in p["rcpts"]:
        if cls in ("hard", "soft", "block", "arf"):
            expect[r] = cls
            if not tok:
                seeds.append(r)
        else:
            unmatched += 1
    path = f"{out}/corpus/{i:05d}.eml"
    data = text.encode("utf-8")
    sizes += len(data)
    with open(path, "wb") as f:
        f.write(data)
    how = ("original-token" if kind == "arf" else "envelope-token" if tok else
           "sent-mail-match" if kind != "replies" else "reply-no-token")
    lst.write(f"{path}\t{env}\t{how}\n")
    v = p["variant"]
    by_variant[v] = by_variant.get(v, 0) + 1
lst.close()

# the event log: processed events for the recipients that carry no token,
# among unrelated ones, oldest first
now = int(time.time())
day = time.strftime("%Y-%m-%d", time.gmtime(now))
midnight = now - now % 86400
lo = max(midnight, now - 6 * 3600)
others = ["gmail.example", "yahoo.example", "hotmail.example", "outlook.example",
          "gmx.example", "web.example", "aol.example", "icloud.example"]
evs = [(r, f"seed{k}") for k, r in enumerate(seeds)]
for k in range(nevents):
    d = f"example{rng.randrange(ndom)}.org" if k % 2 == 0 else rng.choice(others)
    evs.append((f"other{k}@{d}", f"bulk{k}"))
rng.shuffle(evs)
stamps = sorted(rng.randrange(lo, max(lo + 1, now - 30)) for _ in evs)
os.makedirs(f"{store}/events", exist_ok=True)
with open(f"{store}/events/{day}.jsonl", "a") as f:
    for (email, eid), ts in zip(evs, stamps):
        f.write(json.dumps({"timestamp": ts, "event": "processed", "email": email,
                            "tenant": "default", "sg_event_id": eid}) + "\n")

cls_count = {}
for c in expect.values():
    cls_count[c] = cls_count.get(c, 0) + 1
json.dump({"expect": expect, "unmatched": unmatched, "counts": cls_count}, open(f"{out}/expect.json", "w"))
ntok = sum(1 for p in plan if p["token"])
print(f"# corpus: {n} messages, {sizes / n / 1024:.1f} KiB average; " +
      ", ".join(f"{k}={c}" for (k, _), c in zip(MIX, counts)))
print("# corpus by shape: " + ", ".join(f"{k}={v}" for k, v in sorted(by_variant.items())))
print(f"# corpus expects: bounce recipients hard={cls_count.get('hard', 0)} "
      f"soft={cls_count.get('soft', 0)} block={cls_count.get('block', 0)}, "
      f"spam reports={cls_count.get('arf', 0)}, unmatched (replies)={unmatched}")
print(f"# corpus tokens: {ntok} messages carry one ({len(specs)} minted in {t_mint:.1f} s, "
      f"{jobs} at a time); {len(seeds)} recipients matched by sent mail: "
      f"{len(seeds)} + {nevents} unrelated processed events in events/{day}.jsonl")
EOF

# drive.py LIST OUT STEP ARGV... - each STEPth "FILE<TAB>ENVELOPE<TAB>PATH" of LIST, one
# process per message (ARGV, "{rcpt}" replaced by the envelope), stdin the
# file, stdout /dev/null, stderr appended to OUT.err; a "msgs=.. seconds=.."
# line to OUT
cat >"$work/drive.py" <<'EOF'
import os, sys, time
lst, out, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
argv = sys.argv[4:]
items = [(l.rstrip("\n").split("\t") + ["-", "-"])[:3] for l in open(lst)][::step]
null = os.open(os.devnull, os.O_WRONLY)
err = os.open(out + ".err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
env = dict(os.environ)
prog = argv[0]
has_rcpt = "{rcpt}" in argv
# DRIVE_PARALLEL (1): this many children at a time, as pipe(8) runs up to
# its transport's concurrency limit of deliveries at once
par = int(os.environ.get("DRIVE_PARALLEL", "1"))
lat, cpu, bad, by = [], 0.0, [], {}
running = {}
def reap():
    global cpu
    pid, status, ru = os.wait4(-1, 0)
    path, how, s = running.pop(pid)
    lat.append(time.perf_counter() - s)
    by.setdefault(how, []).append(lat[-1])
    cpu += ru.ru_utime + ru.ru_stime
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        bad.append(f"{path}: exit {rc}")
t0 = time.perf_counter()
for path, rcpt, how in items:
    a = [rcpt if x == "{rcpt}" else x for x in argv] if has_rcpt else argv
    while len(running) >= par:
        reap()
    s = time.perf_counter()
    pid = os.posix_spawn(prog, a, env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, path, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
    running[pid] = (path, how, s)
while running:
    reap()
t = time.perf_counter() - t0
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
with open(out, "w") as f:
    f.write(f"msgs={len(items)} seconds={t:.3f} msgs_per_s={len(items) / t:.1f} "
            f"ms_per_msg={t * 1000 / len(items):.3f} cpu_ms_per_msg={cpu * 1000 / len(items):.3f} "
            f"p50_ms={q(0.50):.2f} p99_ms={q(0.99):.2f} failures={len(bad)}\n")
    if has_rcpt and len(by) > 1:
        f.write("# by path (wall ms per message, mean/p50/p99): " + ", ".join(
            f"{k} n={len(v)} {sum(v) * 1000 / len(v):.2f}/{sorted(v)[len(v) // 2] * 1000:.2f}/"
            f"{sorted(v)[min(len(v) - 1, int(0.99 * len(v)))] * 1000:.2f}"
            for k, v in sorted(by.items())) + "\n")
    for b in bad[:5]:
        f.write(f"# failed: {b}\n")
EOF

# sisimai_all.pl LIST OUT - Sisimai over every file in one process, timed inside;
# per file what it found to OUT.found
cat >"$work/sisimai_all.pl" <<'EOF'
use strict;
use warnings;
use Sisimai;
use Time::HiRes qw(time);
my ($list, $out) = @ARGV;
open(my $lf, '<', $list) or die "$list: $!\n";
my @files = map { (split /\t/)[0] } grep { chomp; length } <$lf>;
close($lf);
my (%reasons, @found);
my ($hit, $errs) = (0, 0);
my $t0 = time;
for my $file (@files) {
    open(my $fh, '<:raw', $file) or die "$file: $!\n";
    my $text = do { local $/; <$fh> };
    close($fh);
    my $list = eval { local $SIG{__WARN__} = sub { }; Sisimai->make(\$text, delivered => 1, vacation => 1) };
    if (!defined $list && $@) { $errs++; next; }
    $list ||= [];
    $hit++ if @$list;
    for my $r (@$list) {
        my $reason = $r->reason || '-';
        $reasons{$reason}++;
        push @found, join("\t", $file, $r->recipient ? $r->recipient->address : '-', $reason);
    }
}
my $t = time - $t0;
my $n = scalar @files;
open(my $of, '>', $out) or die "$out: $!\n";
printf $of "msgs=%d seconds=%.3f msgs_per_s=%.1f ms_per_msg=%.3f cpu_ms_per_msg=- p50_ms=- p99_ms=- failures=%d\n",
    $n, $t, $n / $t, $t * 1000 / $n, $errs;
printf $of "# sisimai_one_process: records in %d of %d messages (%d died); reasons: %s\n", $hit, $n, $errs,
    join(' ', map { "$_=$reasons{$_}" } sort { $reasons{$b} <=> $reasons{$a} || $a cmp $b } keys %reasons);
close($of);
open(my $ff, '>', "$out.found") or die "$out.found: $!\n";
print $ff "$_\n" for @found;
close($ff);
EOF

# sisimai1.pl <FILE - one message from stdin, as a per-message Sisimai process would
cat >"$work/sisimai1.pl" <<'EOF'
use strict;
use warnings;
use Sisimai;
binmode(STDIN);
my $text = do { local $/; <STDIN> };
my $list = Sisimai->make(\$text, delivered => 1, vacation => 1) || [];
exit 0;
EOF

# sanity.py EVENTS_DIR EXPECT - what the ingest run recorded, beside what the
# corpus implies; "KEY=VALUE ... PASS|FAIL" and up to 5 differences
cat >"$work/sanity.py" <<'EOF'
import glob, json, os, sys
d, expf = sys.argv[1:3]
e = json.load(open(expf))
expect, want_unmatched = e["expect"], e["unmatched"]
seen, counts, bad, torn = {}, {}, [], 0
for f in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
    for line in open(f, "rb"):
        try:
            ev = json.loads(line)
        except ValueError:
            torn += 1
            continue
        t = ev.get("event")
        if t == "processed":
            continue
        if t == "bounce":
            t = "bounce_" + ev.get("bounce_type", "?")
        counts[t] = counts.get(t, 0) + 1
        if t.startswith("bounce_") or t == "spamreport":
            got = "arf" if t == "spamreport" else t[7:]
            a = ev.get("email", "")
            if expect.get(a) != got:
                bad.append(f"{a}: {got} event, the corpus says {expect.get(a, 'nothing')}")
            elif a in seen:
                bad.append(f"{a}: a second {got} event")
            seen[a] = got
for a, c in expect.items():
    if a not in seen:
        bad.append(f"{a}: no event, the corpus says {c}")
want = {"bounce_hard": 0, "bounce_soft": 0, "bounce_block": 0, "spamreport": 0}
for c in expect.values():
    want["spamreport" if c == "arf" else "bounce_" + c] += 1
want["unmatched"] = want_unmatched
for k in counts:
    want.setdefault(k, 0)
ok = not bad and torn == 0 and all(counts.get(k, 0) == v for k, v in want.items())
print(" ".join(f"{k}={counts.get(k, 0)}/{v}" for k, v in sorted(want.items())) +
      f" torn_lines={torn} " + ("PASS" if ok else "FAIL"))
for b in bad[:5]:
    print("# sanity: " + b)
if len(bad) > 5:
    print(f"# sanity: ... {len(bad) - 5} more")
EOF

# --- the corpus ----------------------------------------------------------------------
CPUS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
fs() { df -PT "$1" | awk 'NR == 2 { print $1 "(" $2 ")" }'; }
echo "# bench: sgadmin ingest, one process per message as pipe(8) runs it, beside Sisimai, $(date -u +%FT%TZ)"
echo "# machine: cpus=$CPUS ($(uname -m), $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# sgadmin: $sgadmin_id"
# shellcheck disable=SC2016  # perl's own variables
echo "# sisimai: $("$PERL" -MSisimai -e 'print "Sisimai $Sisimai::VERSION"'), perl $("$PERL" -e 'printf "%vd", $^V'), driver $("$PY" -V 2>&1)"
t0=$(date +%s)
"$PY" "$work/gen.py" "$FIXTURES" "$work" "$N" "$EVENTS" "$SEED" "$TOKEN_MAKE" "$SG/token.key" \
    "$SG/store" "$CPUS" >"$work/gen.out" 2>&1 || die "the corpus: $(tail -n 20 "$work/gen.out")"
cat "$work/gen.out"
echo "# corpus made in $(($(date +%s) - t0)) s, on $(fs "$work"); every process on core $CPU (taskset -c $CPU)"
cp -a "$SG/store" "$work/store.snapshot"
restore() {
    rm -rf "$SG/store"
    cp -a "$work/store.snapshot" "$SG/store"
}
# the per-message Sisimai sample: every STEPth message
STEP=$((N / SAMPLE))
awk -v s="$STEP" '(NR - 1) % s == 0' "$work/list.tsv" | head -n "$SAMPLE" >"$work/sample.tsv"
NSAMPLE=$(wc -l <"$work/sample.tsv")

# --- warm-up (untimed) -------------------------------------------------------------------
cat "$work"/corpus/*.eml >/dev/null
head -n "$WARMUP" "$work/list.tsv" >"$work/warm.tsv"
[ "$WARMUP" -eq 0 ] ||
    taskset -c "$CPU" "$PY" "$work/drive.py" "$work/warm.tsv" "$work/warm.out" 1 \
        "$SGADMIN" -c "$CONF" ingest --recipient "{rcpt}" || die "the warm-up failed"
restore
"$PERL" "$work/sisimai1.pl" <"$(head -n 1 "$work/list.tsv" | cut -f1)" ||
    die "Sisimai cannot parse $(head -n 1 "$work/list.tsv" | cut -f1)"

# --- the runs ------------------------------------------------------------------------------
: >"$work/results"
FAILURES=0
SANE=1
run_line() {
    # run_line CONFIG ROUND OUTFILE
    _l=$(head -n 1 "$3")
    echo "run config=$1 round=$2 $_l"
    echo "$2 $1 $(echo "$_l" | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')" >>"$work/results"
    grep '^# ' "$3" || true
}
run_ingest() {
    # run_ingest ROUND [CONFIG PARALLEL]
    _c=${2:-sgadmin_ingest}
    restore
    DRIVE_PARALLEL=${3:-1} taskset -c "$CPU" "$PY" "$work/drive.py" "$work/list.tsv" \
        "$work/a$1.out" 1 "$SGADMIN" -c "$CONF" ingest --recipient "{rcpt}" ||
        die "the ingest driver failed"
    run_line "$_c" "$1" "$work/a$1.out"
    _f=$(sed -n '1s/.*failures=\([0-9]*\).*/\1/p' "$work/a$1.out")
    FAILURES=$((FAILURES + ${_f:-1}))
    if [ -s "$work/a$1.out.err" ]; then
        echo "# sgadmin stderr: $(wc -l <"$work/a$1.out.err") line(s), e.g.:"
        sort "$work/a$1.out.err" | uniq -c | sort -rn | head -n 3 | sed 's/^/#   /'
    fi
    # the sanity checks: the store and the event log
    _s=$("$PY" "$work/sanity.py" "$SG/store/events" "$work/expect.json")
    echo "sanity round=$1 events $(echo "$_s" | head -n 1)"
    echo "$_s" | sed -n '2,$p'
    case $_s in *" PASS"*) ;; *) SANE=0 ;; esac
    "$SGADMIN" -c "$CONF" --json bounces list --limit 500 >"$work/bounces.json" 2>&1 || true
    "$SGADMIN" -c "$CONF" --json spam-reports list --limit 500 >"$work/spam.json" 2>&1 || true
    _l=$("$PY" -c 'import json, sys
def rows(p):
    try: return json.load(open(p))
    except Exception: return None
b, s = rows(sys.argv[1]), rows(sys.argv[2])
if b is None or s is None: print("unreadable FAIL"); sys.exit()
hard = sum(1 for r in b if r.get("bounce_type") == "hard")
print("bounces_listed=%d hard=%d spam_reports_listed=%d %s" % (len(b), hard, len(s),
      "PASS" if hard > 0 and len(s) > 0 else "FAIL"))' "$work/bounces.json" "$work/spam.json")
    echo "sanity round=$1 store (first 500 of each list) $_l"
    case $_l in *PASS) ;; *) SANE=0 ;; esac
}
run_sisimai() {
    taskset -c "$CPU" "$PERL" "$work/sisimai_all.pl" "$work/list.tsv" "$work/b$1.out" ||
        die "the Sisimai run failed"
    run_line sisimai_one_process "$1" "$work/b$1.out"
    taskset -c "$CPU" "$PY" "$work/drive.py" "$work/sample.tsv" "$work/c$1.out" 1 \
        "$(command -v "$PERL")" "$work/sisimai1.pl" || die "the per-message Sisimai driver failed"
    run_line sisimai_per_message "$1" "$work/c$1.out"
}

t_start=$(date +%s)
r=1
while [ "$r" -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then
        run_ingest "$r"
        run_ingest "$r" sgadmin_ingest_pipe "$PARALLEL"
        run_sisimai "$r"
    else
        run_sisimai "$r"
        run_ingest "$r" sgadmin_ingest_pipe "$PARALLEL"
        run_ingest "$r"
    fi
    r=$((r + 1))
done
# what any process costs here: /bin/true through the same driver
TRUE=/bin/true
[ -x "$TRUE" ] || TRUE=/usr/bin/true
NFLOOR=$((N < 2000 ? N : 2000))
head -n "$NFLOOR" "$work/list.tsv" >"$work/floor.tsv"
taskset -c "$CPU" "$PY" "$work/drive.py" "$work/floor.tsv" "$work/floor.out" 1 "$TRUE" ||
    die "the exec-floor driver failed"
run_line exec_floor 1 "$work/floor.out"
t_end=$(date +%s)

med_of() { awk -v c="$1" '$2 == c { print $3 }' "$work/results" | median; }
ma=$(med_of sgadmin_ingest)
mp=$(med_of sgadmin_ingest_pipe)
mb=$(med_of sisimai_one_process)
mc=$(med_of sisimai_per_message)
echo "# timed runs took $((t_end - t_start)) s; load now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median config=sgadmin_ingest msgs=$N rounds=$ROUNDS msgs_per_s=$ma"
echo "median config=sgadmin_ingest_pipe parallel=$PARALLEL msgs=$N rounds=$ROUNDS msgs_per_s=$mp"
echo "median config=sisimai_one_process msgs=$N rounds=$ROUNDS msgs_per_s=$mb"
echo "median config=sisimai_per_message msgs=$NSAMPLE rounds=$ROUNDS msgs_per_s=$mc"
echo "ratio sgadmin_ingest/sisimai_per_message=$(ratio "$ma" "$mc")"
echo "ratio sgadmin_ingest_pipe/sisimai_per_message=$(ratio "$mp" "$mc")"
echo "ratio sgadmin_ingest/sisimai_one_process=$(ratio "$ma" "$mb")"
echo "failures sgadmin_ingest=$FAILURES"
fail=0
v=PASS
[ "$SANE" -eq 1 ] || { v=FAIL; fail=1; }
echo "sanity $v"
v=PASS
if [ "$FAILURES" -ne 0 ] ||
    [ "$(awk -v a="$ma" -v p="$mp" -v b="$BAR" 'BEGIN { print (a + 0 >= b && p + 0 >= b) }')" != 1 ]; then
    v=FAIL
    fail=1
fi
echo "bar sgadmin_ingest_msgs_per_s>=$BAR and sgadmin_ingest_pipe_msgs_per_s>=$BAR $v"
exit $fail
