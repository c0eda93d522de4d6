#!/bin/sh
# relay_callers - real programs that call sendmail, pointed at sgrelay,
# deliver through it to an SMTP server on loopback, and the message received
# is what the program meant to send: PHP's mail() (-t -i, headers in CRLF and
# body in LF; with and without -f), Symfony Mailer's sendmail transport (-bs,
# and -i with the recipients on the command line), bsd-mailx (-i -t -f),
# git send-email (-f -i and every recipient on the command line) and mutt
# (-oem -oi -f --).  Each check looks at the envelope, the header (Bcc gone,
# the caller's fields kept, Date/Message-ID/From added only when missing),
# the body and attachments byte for byte, and CRLF line ends throughout.
# Then refusals reach the caller (mail() false, Symfony's exception) with
# nothing queued, and with a smarthost that never answers the default -odb
# returns at once (the detached delivery holds none of the caller's pipes),
# the mail stays queued and a later queue run delivers it intact.
#
# Needs the Debian packages php-cli, php-symfony-mailer, bsd-mailx,
# git-email, libmailtools-perl (git send-email dies without Mail::Address)
# and mutt.  A missing one fails the test under CI=true, else skips it (77).
. "$(dirname "$0")/lib.sh"
: "${SGRELAY:?run through make check}"

SYMFONY_AUTOLOAD=/usr/share/php/Symfony/Component/Mailer/autoload.php

# --- what the callers need -------------------------------------------------
missing=""
for prog in php mail mutt git perl; do
    command -v "$prog" >/dev/null 2>&1 || missing="$missing $prog"
done
if command -v mail >/dev/null 2>&1 &&
    ! readlink -f "$(command -v mail)" | grep -q bsd-mailx; then
    missing="$missing bsd-mailx(mail is $(readlink -f "$(command -v mail)"))"
fi
[ -f "$SYMFONY_AUTOLOAD" ] || missing="$missing php-symfony-mailer"
if command -v git >/dev/null 2>&1; then
    [ -f "$(git --exec-path)/git-send-email" ] || missing="$missing git-email"
fi
perl -MMail::Address -e 1 2>/dev/null || missing="$missing libmailtools-perl"
if [ -n "$missing" ]; then
    if [ "${CI:-}" = true ]; then
        fail "missing:$missing (install php-cli php-symfony-mailer bsd-mailx git-email libmailtools-perl mutt)"
    fi
    echo "$TESTNAME: SKIP, missing:$missing" >&2
    exit 77
fi

# --- sgrelay, the SMTP peer, a sendmail wrapper ------------------------------
PORT=$(free_port)
SINK="$WORK/sink"
CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$WORK/spool"; retry_min = "1s"; retry_max = "2s"; };
relay = { smarthost = "127.0.0.1:$PORT"; domain = "relay.test"; starttls = "none";
          connections = 1; };
EOF
# the spools made beforehand: sgrelay creates one only when run by root
mkdir -p "$WORK/store" "$WORK/home" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer" \
    "$WORK/slowspool/tmp" "$WORK/slowspool/queue" "$WORK/slowspool/defer"
peer_start "$SINK" "$PORT"
ME=$(id -un)

# A caller that names only a program (bsd-mailx, mutt's $sendmail) reaches
# sgrelay's -C through this; -odi delivers before the caller's wait ends.
WRAPPER="$WORK/sendmail"
cat >"$WRAPPER" <<EOF
#!/bin/sh
printf '%s\n' "\$*" >>"$WORK/wrapper.log"
exec "$SGRELAY" -C "$CONF" -odi "\$@"
EOF
chmod 755 "$WRAPPER"

# The callers must not read the invoking user's configuration.
HOME="$WORK/home"
export HOME
unset MAILRC MUTT EMAIL REPLYTO 2>/dev/null || true
GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_NOSYSTEM
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL \
    GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL 2>/dev/null || true

# A binary attachment with every byte value (CR, LF, NUL, dots).
$PY -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 8 + b".\r\n.\n")' >"$WORK/data.bin"

# run WHAT COMMAND... - a caller; its output in $WORK/out and $WORK/err
run() {
    what=$1
    shift
    set +e
    "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
    expect_rc 0 "$what"
}

# wait_msg SUBJECT - the message received with this exact Subject line, in
# $M (the peer writes the .json before the .eml); waits up to 15 s, as a
# caller without -odi leaves the delivery to a detached process.
wait_msg() {
    [ ! -s "$WORK/checks" ] || fail "internal: checks queued without mverify"
    want=$(printf 'Subject: %s\r' "$1")
    M=""
    for _ in $(seq 150); do
        M=$(grep -l -x -F -- "$want" "$SINK"/*.eml 2>/dev/null | head -1) || true
        [ -n "$M" ] && break
        sleep 0.1
    done
    CHECKS=$((CHECKS + 1))
    [ -n "$M" ] || fail "no message with 'Subject: $1' received; peer log: $(tail -5 "$SINK/peer.log"); queue: $("$SGRELAY" -C "$CONF" -bp 2>&1)"
    J="${M%.eml}.json"
}

# queue_empty - once the detached delivery has finished, nothing stays queued
queue_empty() {
    for _ in $(seq 100); do
        [ "$(count_files "$WORK/spool/queue" '*')" -eq 0 ] && break
        sleep 0.1
    done
    sgr -bp
    expect_rc 0 "sgrelay -bp"
    out_has "Mail queue is empty"
}

cat >"$WORK/mcheck.py" <<'EOF'
import email, email.policy, json, quopri, sys
checks = open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1]
raw = open(sys.argv[2], "rb").read()
j = json.load(open(sys.argv[3]))
m = email.message_from_bytes(raw, policy=email.policy.default)
head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
def crlf():
    """Every line ends in CRLF: no bare LF, no bare CR, CRLF at the end."""
    rest = raw.replace(b"\r\n", b"")
    return raw.endswith(b"\r\n") and b"\n" not in rest and b"\r" not in rest
def rcpts():
    return sorted(j["rcpt_tos"])
def count(name):
    return len(m.get_all(name) or [])
def h(name):
    return str(m[name])
def text():
    """The first text/plain part, decoded, with LF line ends."""
    return m.get_body(("plain",)).get_content().replace("\r\n", "\n")
def att(name):
    for part in m.iter_attachments():
        if part.get_filename() == name:
            return part.get_content()
    return None
def qp_body():
    """The body, decoded from quoted-printable, with LF line ends."""
    return quopri.decodestring(raw.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))
for what, expr in zip(checks[0::2], checks[1::2]):
    try:
        ok = eval(expr)
    except Exception as e:
        ok = False
        expr += f" ({type(e).__name__}: {e})"
    if not ok:
        print(f"{what}: {expr} does not hold")
        sys.exit(1)
EOF
: >"$WORK/checks"

# mcheck WHAT EXPR - a Python expression that must hold for the message $M
# (raw: its bytes, m: parsed, head: the header bytes, j: the envelope the
# peer recorded); mverify then evaluates the ones queued in one Python.
mcheck() {
    CHECKS=$((CHECKS + 1))
    printf '%s\n%s\n' "$1" "$2" >>"$WORK/checks"
}
mverify() {
    $PY "$WORK/mcheck.py" "$WORK/checks" "$M" "$J" >"$WORK/mfail" 2>&1 ||
        fail "$(cat "$WORK/mfail") for $(basename "$M"); envelope: $(tr -d '\n' <"$J" | head -c 600); message: $(head -c 1500 "$M")"
    : >"$WORK/checks"
}

# common CALLER - what holds for every message received
common() {
    mcheck "$1: CRLF line ends only" 'crlf()'
    mcheck "$1: no Bcc field" 'count("Bcc") == 0 and not any(l.lower().startswith(b"bcc:") for l in head.split(b"\r\n"))'
    mcheck "$1: one From, one Date, one Message-ID" 'count("From") == 1 and count("Date") == 1 and count("Message-ID") == 1'
    mcheck "$1: no Return-Path, no Content-Length" 'count("Return-Path") == 0 and count("Content-Length") == 0'
    mcheck "$1: header and body separated" 'b"\r\n\r\n" in raw'
}

SENT=0

# --- 1. PHP mail(): -t -i, the default -odb -----------------------------------
# PHP writes To, Subject and the additional headers with CRLF, then the body
# as given (LF here) and a CRLF.  Bcc is a recipient only through -t.
cat >"$WORK/mail1.php" <<'EOF'
<?php
$body = "Hello from PHP mail().\n.\n.leading dot\n..two dots\nlast line";
$ok = mail("Ann Example <ann@example.org>, bob@example.org", "php mail one", $body,
    "From: PHP Sender <php@example.com>\r\nCc: carol@example.org\r\n" .
    "X-Extra: extra header value\r\nBcc: hidden@example.org");
echo $ok ? "sent\n" : "mail() failed\n";
exit($ok ? 0 : 1);
EOF
run "PHP mail() -t -i" php -n -d sendmail_path="$SGRELAY -C $CONF -t -i" "$WORK/mail1.php"
out_has "sent"
SENT=$((SENT + 1))
wait_msg "php mail one"
common "php mail()"
mcheck "php: envelope sender is the invoking user" "j['mail_from'] == '$ME@relay.test'"
mcheck "php: To, Cc and Bcc are the recipients" 'rcpts() == ["ann@example.org", "bob@example.org", "carol@example.org", "hidden@example.org"]'
mcheck "php: the Bcc address appears nowhere" 'b"hidden@example.org" not in raw'
mcheck "php: To kept" 'h("To") == "Ann Example <ann@example.org>, bob@example.org"'
mcheck "php: From kept" 'h("From") == "PHP Sender <php@example.com>"'
mcheck "php: extra header kept" 'h("X-Extra") == "extra header value"'
mcheck "php: Date and Message-ID added" 'count("Date") == 1 and h("Message-ID").endswith("@relay.test>")'
mcheck "php: body kept, dot lines too (-i)" 'raw.endswith(b"\r\n\r\nHello from PHP mail().\r\n.\r\n.leading dot\r\n..two dots\r\nlast line\r\n")'
mverify
queue_empty

# --- 1b. PHP mail() with -f as the 5th parameter, -odi ----------------------
cat >"$WORK/mail2.php" <<'EOF'
<?php
$ok = mail("dave@example.org", "php mail two", "Second PHP message.\n",
    ["X-Mailer" => "PHP/" . PHP_VERSION], "-fbounces+php@example.com");
echo $ok ? "sent\n" : "mail() failed\n";
exit($ok ? 0 : 1);
EOF
run "PHP mail() with -f" php -n -d sendmail_path="$SGRELAY -C $CONF -t -i -odi" "$WORK/mail2.php"
out_has "sent"
SENT=$((SENT + 1))
wait_msg "php mail two"
common "php mail() -f"
mcheck "php -f: envelope sender from -f" 'j["mail_from"] == "bounces+php@example.com"'
mcheck "php -f: the recipient" 'rcpts() == ["dave@example.org"]'
mcheck "php -f: From added from -f" 'h("From") == "bounces+php@example.com" and b"From: <bounces+php@example.com>\r\n" in head'
mcheck "php -f: X-Mailer kept" 'h("X-Mailer").startswith("PHP/")'
mcheck "php -f: body" 'raw.endswith(b"\r\n\r\nSecond PHP message.\r\n\r\n")'
mverify
queue_empty

# --- 2. Symfony Mailer, sendmail transport -----------------------------------
cat >"$WORK/symfony.php" <<EOF
<?php
require '$SYMFONY_AUTOLOAD';
EOF
cat >>"$WORK/symfony.php" <<'EOF'
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mime\Email;
[, $command, $subject, $attachment] = $argv;
$count = (int) ($argv[4] ?? 1);
$transport = new SendmailTransport($command);
$mailer = new Mailer($transport);
// $count messages through one transport: one -bs session, or one run each
for ($i = 1; $i <= $count; $i++) {
    $email = (new Email())
        ->from('Symfony Sender <sym@example.com>')
        ->to('To One <to1@example.org>', 'to2@example.org')
        ->cc('cc@example.org')
        ->bcc('bcc1@example.org', 'bcc2@example.org')
        ->subject($count > 1 ? "$subject #$i" : $subject)
        ->text("Hello from Symfony.\n.\n.leading dot\nlast line\n")
        ->attachFromPath($attachment, 'data.bin', 'application/octet-stream');
    try {
        $mailer->send($email);
    } catch (Exception $e) {
        echo "error: ", get_class($e), ": ", $e->getMessage(), "\n";
        exit(1);
    }
}
// the transport's destructor sends QUIT (-bs) and waits for sgrelay
unset($mailer, $transport);
echo "sent\n";
EOF

# symfony_checks CASE SUBJECT
symfony_checks() {
    wait_msg "$2"
    common "$1"
    mcheck "$1: envelope sender is From" 'j["mail_from"] == "sym@example.com"'
    mcheck "$1: To, Cc and Bcc are the recipients" 'rcpts() == ["bcc1@example.org", "bcc2@example.org", "cc@example.org", "to1@example.org", "to2@example.org"]'
    mcheck "$1: the Bcc addresses appear nowhere" 'b"bcc1@" not in raw and b"bcc2@" not in raw'
    mcheck "$1: To, Cc, From kept" 'h("To") == "To One <to1@example.org>, to2@example.org" and h("Cc") == "cc@example.org" and h("From") == "Symfony Sender <sym@example.com>"'
    mcheck "$1: Symfony's Message-ID kept" 'not h("Message-ID").endswith("@relay.test>")'
    mcheck "$1: multipart/mixed" 'm.get_content_type() == "multipart/mixed"'
    mcheck "$1: text part, dot lines too" 'text() == "Hello from Symfony.\n.\n.leading dot\nlast line\n"'
    mcheck "$1: attachment byte for byte" "att('data.bin') == open('$WORK/data.bin', 'rb').read()"
    mverify
    queue_empty
}

# -bs: SMTP over a pipe, dot-stuffed by Symfony, unstuffed by sgrelay
# (two messages in one session)
run "Symfony -bs" php "$WORK/symfony.php" "$SGRELAY -C $CONF -bs -odi" "symfony bs" "$WORK/data.bin" 2
out_has "sent"
SENT=$((SENT + 2))
symfony_checks "symfony -bs, first message" "symfony bs #1"
symfony_checks "symfony -bs, second message" "symfony bs #2"

# -t -i: Symfony drops -t, adds -f'sender' and -- 'rcpt'..., writes LF lines
run "Symfony -t -i" php "$WORK/symfony.php" "$SGRELAY -C $CONF -t -i -odi" "symfony t" "$WORK/data.bin"
out_has "sent"
SENT=$((SENT + 1))
symfony_checks "symfony -t -i" "symfony t"

# --- 3. bsd-mailx: "set sendmail" in $MAILRC; it runs PROG -i -t [-f FROM] ----
printf 'set sendmail=%s\n' "$WRAPPER" >"$WORK/mailrc"
printf 'Hello from mailx.\n.\n.leading dot\nUTF-8: caf\303\251\n' >"$WORK/mailx-body"
: >"$WORK/wrapper.log"
set +e
MAILRC="$WORK/mailrc" mail -s "mailx one" -c mcc@example.org -b mbcc@example.org \
    -a "X-Extra: from mailx" -r "Mailx Sender <mx@example.com>" mto@example.org \
    <"$WORK/mailx-body" >"$WORK/out" 2>"$WORK/err"
RC=$?
set -e
expect_rc 0 "mail (bsd-mailx)"
SENT=$((SENT + 1))
check "mailx called sendmail with -i -t -f" grep -q -- '^-i -t -f' "$WORK/wrapper.log"
wait_msg "mailx one"
common "mailx"
mcheck "mailx: envelope sender from -r" 'j["mail_from"] == "mx@example.com"'
mcheck "mailx: To, Cc and Bcc are the recipients" 'rcpts() == ["mbcc@example.org", "mcc@example.org", "mto@example.org"]'
mcheck "mailx: the Bcc address appears nowhere" 'b"mbcc@" not in raw'
mcheck "mailx: extra header and MIME fields kept" 'h("X-Extra") == "from mailx" and m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"'
mcheck "mailx: Date and Message-ID added" 'count("Date") == 1 and h("Message-ID").endswith("@relay.test>")'
mcheck "mailx: body byte for byte, dot lines too" 'raw.endswith(b"\r\n\r\nHello from mailx.\r\n.\r\n.leading dot\r\nUTF-8: caf\xc3\xa9\r\n")'
mverify
queue_empty

# without -r: the sender is the invoking user, From is added by sgrelay
printf 'No sender given.\n' >"$WORK/mailx-body"
set +e
MAILRC="$WORK/mailrc" mail -s "mailx two" mto2@example.org <"$WORK/mailx-body" >"$WORK/out" 2>"$WORK/err"
RC=$?
set -e
expect_rc 0 "mail (bsd-mailx) without -r"
SENT=$((SENT + 1))
wait_msg "mailx two"
common "mailx without -r"
mcheck "mailx: envelope sender is the invoking user" "j['mail_from'] == '$ME@relay.test' and rcpts() == ['mto2@example.org']"
mcheck "mailx: From added for the invoking user" "m['From'].addresses[0].addr_spec == '$ME@relay.test'"
mcheck "mailx: body" 'raw.endswith(b"\r\n\r\nNo sender given.\r\n")'
mverify
queue_empty

# --- 4. git send-email: CMD [-f SENDER] -i RCPT... through sh -c -------------
R="$WORK/repo"
git init -q "$R"
gitc() { git -C "$R" -c user.name="Git Author" -c user.email=author@example.com "$@"; }
printf 'one\n' >"$R/file.txt"
gitc add file.txt
gitc commit -q -m "First commit"
printf 'one\n.\n.two\ntrailing space \n' >"$R/file.txt"
printf '\001\002 binary\r\n' >"$R/blob.bin"
gitc add file.txt blob.bin
gitc commit -q -m "Change with dots

A body line.
.
The line above is a single dot."
gitc format-patch -q --binary -1 -o "$WORK/patches"
P=$(ls "$WORK/patches"/*.patch)
run "git send-email" gitc send-email --sendmail-cmd="$SGRELAY -C $CONF -odi" \
    --from="Git Sender <gs@example.com>" --envelope-sender=bounces+git@example.com \
    --to=gto@example.org --cc="Git Cc <gcc@example.org>" --bcc=gbcc@example.org \
    --confirm=never --suppress-cc=all --no-validate --no-thread "$P" </dev/null
out_has "Result: OK"
out_has "Sendmail: $SGRELAY -C $CONF -odi -f bounces+git@example.com -i gto@example.org gcc@example.org gbcc@example.org"
SENT=$((SENT + 1))
wait_msg "[PATCH] Change with dots"
common "git send-email"
mcheck "git: envelope sender from --envelope-sender" 'j["mail_from"] == "bounces+git@example.com"'
mcheck "git: to, cc and bcc are the recipients" 'rcpts() == ["gbcc@example.org", "gcc@example.org", "gto@example.org"]'
mcheck "git: the Bcc address appears nowhere" 'b"gbcc@" not in raw'
mcheck "git: git's Message-Id kept, no second one" 'count("Message-ID") == 1 and h("Message-ID").endswith("@example.com>")'
mcheck "git: X-Mailer kept" 'h("X-Mailer").startswith("git-send-email")'
mcheck "git: quoted-printable, for the CR in the patch" 'h("Content-Transfer-Encoding") == "quoted-printable"'
# (git puts the author in the body, as the sender differs)
mcheck "git: the patch text byte for byte, once decoded" "qp_body() == b'From: Git Author <author@example.com>\n\n' + open('$P', 'rb').read().split(b'\n\n', 1)[1]"
mcheck "git: the single-dot line kept" 'b"\r\nA body line.\r\n.\r\nThe line above" in raw'
# the patch as received applies and gives the same tree
git clone -q "$R" "$WORK/clone"
git -C "$WORK/clone" reset -q --hard HEAD~1
set +e
git -C "$WORK/clone" -c user.name=x -c user.email=x@example.com am -q "$M" >"$WORK/out" 2>"$WORK/err"
RC=$?
set -e
expect_rc 0 "git am of the received message"
check "git am: the same tree" [ "$(git -C "$WORK/clone" rev-parse 'HEAD^{tree}')" = "$(git -C "$R" rev-parse 'HEAD^{tree}')" ]
check "git am: the same author and message" [ "$(git -C "$WORK/clone" log -1 --format='%an <%ae>%n%B')" = "$(git -C "$R" log -1 --format='%an <%ae>%n%B')" ]
mverify
queue_empty

# --- 5. mutt in batch mode: $sendmail -oem -oi -f FROM -- RCPT... -------------
cat >"$WORK/muttrc" <<EOF
set sendmail="$WRAPPER -oem -oi"
set from="Mutt Sender <mutt@example.com>"
set use_from=yes
set use_envelope_from=yes
set hostname=example.com
set record=""
set copy=no
set charset="utf-8"
set send_charset="us-ascii:utf-8"
set folder="$WORK/home/Mail"
set spoolfile="$WORK/home/mbox"
EOF
printf 'Hello from mutt.\n.\n.leading dot\nUTF-8: na\303\257ve\n' >"$WORK/mutt-body"
: >"$WORK/wrapper.log"
set +e
mutt -n -F "$WORK/muttrc" -s "mutt one" -c mucc@example.org -b mubcc@example.org \
    -a "$WORK/data.bin" -- muto@example.org <"$WORK/mutt-body" >"$WORK/out" 2>"$WORK/err"
RC=$?
set -e
expect_rc 0 "mutt"
SENT=$((SENT + 1))
check "mutt called sendmail with -oem -oi -f mutt@example.com --" grep -q -- '^-oem -oi -f mutt@example.com -- ' "$WORK/wrapper.log"
wait_msg "mutt one"
common "mutt"
mcheck "mutt: envelope sender from use_envelope_from" 'j["mail_from"] == "mutt@example.com"'
mcheck "mutt: to, cc and bcc are the recipients" 'rcpts() == ["mubcc@example.org", "mucc@example.org", "muto@example.org"]'
mcheck "mutt: the Bcc address appears nowhere" 'b"mubcc@" not in raw'
mcheck "mutt: mutt's Message-ID and Date kept" 'h("Message-ID").endswith("@example.com>") and count("Date") == 1'
mcheck "mutt: 8-bit text part byte for byte, dot lines too" 'b"\r\n\r\nHello from mutt.\r\n.\r\n.leading dot\r\nUTF-8: na\xc3\xafve\r\n" in raw and text() == "Hello from mutt.\n.\n.leading dot\nUTF-8: na\u00efve\n"'
mcheck "mutt: attachment byte for byte" "att('data.bin') == open('$WORK/data.bin', 'rb').read()"
mverify
queue_empty

# --- 6. a refusal reaches the caller, and nothing is queued ------------------
received=$(count_files "$SINK" '*.eml')
cat >"$WORK/mail3.php" <<'EOF'
<?php
$ok = mail("Broken <nobody@", "php bad", "Never sent.\n");
echo $ok ? "sent\n" : "refused\n";
EOF
run "PHP mail() with a To field that does not parse" php -n -d sendmail_path="$SGRELAY -C $CONF -t -i -odi" "$WORK/mail3.php"
out_has "refused"
err_has "cannot parse the To field"
SMALL_CONF="$WORK/small.conf"
sed 's/connections = 1;/connections = 1; message_size_limit = 1000;/' "$CONF" >"$SMALL_CONF"
set +e
php "$WORK/symfony.php" "$SGRELAY -C $SMALL_CONF -bs -odi" "symfony too big" "$WORK/data.bin" >"$WORK/out" 2>"$WORK/err"
RC=$?
set -e
expect_rc 1 "Symfony -bs, message over the size limit"
out_has 'error: Symfony\Component\Mailer\Exception\TransportException'
out_has '"552"'
set +e
php "$WORK/symfony.php" "$SGRELAY -C $SMALL_CONF -t -i -odi" "symfony too big" "$WORK/data.bin" >"$WORK/out" 2>"$WORK/err"
RC=$?
set -e
expect_rc 1 "Symfony -t -i, message over the size limit"
out_has "exit code 65"
out_has "relay.message_size_limit"
check "nothing queued" [ "$(count_files "$WORK/spool/queue" '*')" -eq 0 ]
check "nothing in tmp" [ "$(count_files "$WORK/spool/tmp" '*')" -eq 0 ]
check "nothing received" [ "$(count_files "$SINK" '*.eml')" -eq "$received" ]

# --- 7. the default -odb with a smarthost that never answers -----------------
# The detached delivery must not hold the caller: Symfony's -bs transport
# reads sgrelay's output to the end and PHP waits for it to exit, so a child
# that kept their pipes would make them wait for relay.timeout.  The mail
# stays queued, and a queue run delivers it once the smarthost is back.
SLOW_PORT=$(free_port)
$PY -c '
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
open(sys.argv[2], "w").close()
held = []
while True:
    held.append(s.accept()[0])   # accepted, never answered
' "$SLOW_PORT" "$WORK/slow.ready" &
SLOW_PID=$!
PEER_PIDS="${PEER_PIDS:-} $SLOW_PID"
for _ in $(seq 100); do
    [ -f "$WORK/slow.ready" ] && break
    sleep 0.1
done
check "the silent smarthost listens" [ -f "$WORK/slow.ready" ]
SLOW_CONF="$WORK/slow.conf"
cat >"$SLOW_CONF" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$WORK/slowspool"; retry_min = "1s"; retry_max = "2s"; };
relay = { smarthost = "127.0.0.1:$SLOW_PORT"; domain = "relay.test"; starttls = "none";
          connections = 1; timeout = "8s"; };
EOF
now() { $PY -c 'import time; print(time.time())'; }

t0=$(now)
run "PHP mail(), smarthost silent" php -n -d sendmail_path="$SGRELAY -C $SLOW_CONF -t -i" "$WORK/mail1.php"
t1=$(now)
out_has "sent"
check "mail() returned before the delivery ended ($t0 .. $t1)" "$PY" -c "import sys; sys.exit(not $t1 - $t0 < 6)"
t0=$(now)
run "Symfony -bs, smarthost silent" php "$WORK/symfony.php" "$SGRELAY -C $SLOW_CONF -bs" "symfony slow" "$WORK/data.bin"
t1=$(now)
out_has "sent"
check "Symfony -bs returned before the delivery ended ($t0 .. $t1)" "$PY" -c "import sys; sys.exit(not $t1 - $t0 < 6)"
SENT=$((SENT + 2))

# both deliveries time out and defer (defer/ID holds the reason)
for _ in $(seq 200); do
    [ "$(count_files "$WORK/slowspool/defer" '*')" -eq 2 ] && break
    sleep 0.1
done
check "both deferred after the timeout" [ "$(count_files "$WORK/slowspool/defer" '*')" -eq 2 ]
check "both still queued" [ "$(count_files "$WORK/slowspool/queue" '*')" -eq 2 ]
check "nothing reached the peer meanwhile" [ "$(count_files "$SINK" '*.eml')" -eq $((SENT - 2)) ]

# the smarthost back: a queue run delivers both as they were queued
sed "s/127.0.0.1:$SLOW_PORT/127.0.0.1:$PORT/" "$SLOW_CONF" >"$WORK/back.conf"
# (again if need be: a run skips an entry whose detached delivery still
# holds its lock)
for _ in $(seq 10); do
    set +e
    "$SGRELAY" -C "$WORK/back.conf" -q >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
    [ "$RC" -eq 0 ] || break
    [ "$(count_files "$SINK" '*.eml')" -eq "$SENT" ] && break
    sleep 0.5
done
expect_rc 0 "sgrelay -q once the smarthost is back"
check "php mail one received twice in all" [ "$(grep -l -x -F "$(printf 'Subject: php mail one\r')" "$SINK"/*.eml | wc -l)" -eq 2 ]
M=$(grep -l -x -F "$(printf 'Subject: php mail one\r')" "$SINK"/*.eml | tail -1)
J="${M%.eml}.json"
common "php mail() via the queue"
mcheck "php via the queue: envelope" "j['mail_from'] == '$ME@relay.test' and rcpts() == ['ann@example.org', 'bob@example.org', 'carol@example.org', 'hidden@example.org']"
mcheck "php via the queue: body" 'raw.endswith(b"\r\n\r\nHello from PHP mail().\r\n.\r\n.leading dot\r\n..two dots\r\nlast line\r\n")'
mverify
CONF="$WORK/back.conf"
symfony_checks "symfony -bs via the queue" "symfony slow"

# --- every message once, and nothing else -----------------------------------
check "$SENT messages received, no more ($(count_files "$SINK" '*.eml'))" [ "$(count_files "$SINK" '*.eml')" -eq "$SENT" ]

done_ok
