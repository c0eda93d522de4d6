#!/usr/bin/python3
"""milter_wire - the MTA's side of the milter protocol, byte for byte, for
tests/integration/milter_wire.sh: sgmilter's own protocol engine
(milter/mfengine.c) fed what miltertest(8) cannot send: a message in one
write or one byte per write, malformed packets, connections dropped
halfway, many connections at once.

  milter_wire.py PORT SCENE [ARGS]

A packet on the wire is a 4-byte big-endian length (counting the command
byte and the data), the command byte, the data.  Each scene prints one line
per observation, "NAME: WHAT", which the script compares with what it
expects.  A packet the milter sends is shown as its command byte and its
data (a NUL as \\0, any byte outside printable ASCII or a backslash as
\\xNN), the packets of one answer separated by a blank:

    s -<gone@example.org>\\0 c

(the end of the header continued, the first body chunk skipped, then at
the end of the message the suppressed recipient removed and the message let
through: "c s -<gone@example.org>\\0 c").  A message that needs nothing is
accepted at the end of its header ("a"); its client then sends, as Postfix
does, neither its body nor its end but an ABORT.  An option
negotiation is shown as "version=V actions=0xA steps=0xS lists=..." with
each macro list as STAGE:"MACROS" ("none" without lists).  What the milter
sends until it closes a connection is "closed" when it sends nothing, and
"still open" when it does not close within the timeout.

Scenes (ARGS):
  negotiate                 version 6 (every action, every step), 2, 7; an
                            MTA without SMFIF_DELRCPT; a short OPTNEG; a
                            version 2 MTA waiting at every step
  one-write                 a whole message in one write; two in one write
  byte-by-byte              negotiation and message one byte per write
  macros                    "{i}" and "i", at RCPT and at the end; none
  abort                     ABORT after the header, after a body chunk
  quit-nc                   QUIT_NC after a message, and within one
  malformed                 each malformed packet on its own connection
  drop                      connections dropped halfway through a message
  percent                   a refusal whose text has '%' from the message
  parallel THREADS MESSAGES LOG
                            THREADS connections at once, MESSAGES each;
                            LOG: the milter's log, for their queue ids
  drain PID LOG             SIGTERM to PID with a message in flight; LOG:
                            the milter's log, to see it stopping
"""
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

TIMEOUT = 10  # seconds the milter may take for any one answer
PAUSE = 0.002  # between the bytes of a byte-per-write send
MAX_PACKET = 1024 * 1024 + 64  # mfengine's largest packet (MFE_MAX_PACKET)

ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF
SMFIF_DELRCPT = 0x008

GONE = "<gone@example.org>"  # on the bounce list (milter_wire.sh adds it)
OK = "<ok@example.org>"
SENDER = "<news@plain.example>"  # no DKIM key: nothing to add, SKIP
FIELDS = [
    ("From", "Plain <news@plain.example>"),
    ("To", "undisclosed-recipients:;"),
    ("Subject", "wire test"),
    ("Message-ID", "<wire@plain.example>"),
]
BODY = b"hello\r\nwire\r\n"

# replies that end a step (the modifications before them do not)
ENDS = set(b"scartdy")


class Closed(Exception):
    pass


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*strings):
    """NUL-terminated strings"""
    return b"".join((s if isinstance(s, bytes) else s.encode()) + b"\0" for s in strings)


def esc(data):
    out = []
    for ch in data:
        if ch == 0:
            out.append("\\0")
        elif 0x20 <= ch < 0x7F and ch != 0x5C:
            out.append(chr(ch))
        else:
            out.append("\\x%02x" % ch)
    return "".join(out)


def show(packets):
    return " ".join(chr(cmd[0]) + esc(data) if cmd else "(empty)" for cmd, data in packets)


def show_optneg(p):
    cmd, d = p
    if cmd != b"O" or len(d) < 12:
        return "not a negotiation: " + show([p])
    v, a, s = struct.unpack(">III", d[:12])
    lists, rest = [], d[12:]
    while rest:
        if len(rest) < 5 or b"\0" not in rest[4:]:
            lists.append("garbage " + esc(rest))
            break
        end = rest.index(b"\0", 4)
        lists.append('%d:"%s"' % (struct.unpack(">I", rest[:4])[0], esc(rest[4:end])))
        rest = rest[end + 1:]
    return "version=%d actions=0x%x steps=0x%x lists=%s" % (
        v, a, s, " ".join(lists) if lists else "none")


def optneg(version=6, actions=ALL_ACTIONS, steps=ALL_STEPS):
    return pkt(b"O", struct.pack(">III", version, actions, steps))


def envelope(qid=None, rcpts=(GONE, OK), macro="i", fields=(), rmacro=True, eoh=True):
    """MAIL, each RCPT (a macro packet with the queue id before it, as
    Postfix sends them when rmacro), the header fields, and (eoh) the end of
    the header, the step sgmilter answers first"""
    p = [pkt(b"M", z(SENDER, "SIZE=300"))]
    for r in rcpts:
        if qid and rmacro:
            p.append(pkt(b"D", b"R" + z(macro, qid)))
        p.append(pkt(b"R", z(r)))
    for name, value in FIELDS + list(fields):
        p.append(pkt(b"L", z(name, value)))
    if eoh:
        p.append(pkt(b"N"))
    return b"".join(p)


def ending(qid=None, macro="i", body=BODY, emacros=None):
    """a body chunk, the macros of the end (the queue id), the end"""
    p = [pkt(b"B", body)] if body else []
    if emacros is not None:
        p.append(pkt(b"D", b"E" + emacros))
    elif qid:
        p.append(pkt(b"D", b"E" + z(macro, qid)))
    p.append(pkt(b"E"))
    return b"".join(p)


def message(qid=None, settled=False, **kw):
    """a whole message: three answers (the end of the header, the body
    chunk, the end); settled, one that needs nothing: its envelope and
    header, then an ABORT, as Postfix ends a transaction the milter
    accepted at the end of the header (one answer)"""
    env = {k: kw[k] for k in ("rcpts", "macro", "fields", "rmacro") if k in kw}
    end = {k: kw[k] for k in ("macro", "body", "emacros") if k in kw}
    if settled:
        return envelope(qid, **env) + pkt(b"A")
    return envelope(qid, **env) + ending(qid, **end)


class Conn:
    def __init__(self, port, nodelay=False):
        self.s = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        self.s.settimeout(TIMEOUT)
        if nodelay:
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rbuf = b""

    def send(self, data, bytewise=False):
        if not bytewise:
            self.s.sendall(data)
            return
        for i in range(len(data)):
            self.s.sendall(data[i:i + 1])
            time.sleep(PAUSE)

    def _fill(self):
        try:
            c = self.s.recv(65536)
        except ConnectionResetError:
            c = b""
        if not c:
            raise Closed()
        self.rbuf += c

    def packet(self):
        while len(self.rbuf) < 4:
            self._fill()
        n = struct.unpack(">I", self.rbuf[:4])[0]
        if n < 1 or n > MAX_PACKET:
            raise Closed("a packet of %d bytes from the milter" % n)
        while len(self.rbuf) < 4 + n:
            self._fill()
        p = (self.rbuf[4:5], self.rbuf[5:4 + n])
        self.rbuf = self.rbuf[4 + n:]
        return p

    def answers(self, k):
        """the packets up to the k-th that ends a step, shown"""
        got, ends = [], 0
        while ends < k:
            p = self.packet()
            got.append(p)
            if p[0][0] in ENDS:
                ends += 1
        return show(got)

    def ask(self, data, k=1):
        self.send(data)
        return self.answers(k)

    def negotiate(self, *args, bytewise=False):
        self.send(optneg(*args), bytewise)
        return show_optneg(self.packet())

    def rest(self):
        """what the milter sends until it closes the connection"""
        extra = self.rbuf
        self.rbuf = b""
        try:
            while True:
                try:
                    c = self.s.recv(65536)
                except ConnectionResetError:
                    c = b""
                if not c:
                    break
                extra += c
        except socket.timeout:
            return "still open" + (" (sent %s)" % esc(extra) if extra else "")
        finally:
            self.s.close()
        return "closed" if not extra else "closed after sending " + esc(extra)

    def end(self):
        """QUIT: "closed" when nothing more came"""
        self.send(pkt(b"Q"))
        return self.rest()

    def drop(self, reset=False):
        if reset:  # an abortive close: RST, not FIN
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()


def say(name, fn, *args, **kw):
    """print NAME: what fn returns; or what went wrong, and end the scene
    (the script fails at this line: the rest would only wait)"""
    try:
        r = fn(*args, **kw)
    except Closed as e:
        r = "the milter closed the connection" + (" (%s)" % e if str(e) else "")
    except socket.timeout:
        r = "no answer in %d s" % TIMEOUT
    except OSError as e:
        r = "error: %s" % e
    else:
        print("%s: %s" % (name, r), flush=True)
        return r
    print("%s: %s" % (name, r), flush=True)
    sys.exit(0)


def connect(port, name, **kw):
    """a connection, negotiated as Postfix does (every action and step offered)"""
    c = Conn(port, **kw)
    say(name + "-optneg", c.negotiate)
    return c


def scene_negotiate(port):
    c = Conn(port)
    say("optneg-v6", c.negotiate)
    say("optneg-v6-end", c.end)
    c = Conn(port)
    say("optneg-v2", c.negotiate, 2, 0x3F, 0x7F)
    # an MTA of version 2 waits at every step: one reply each
    steps = [("mail", pkt(b"M", z(SENDER))),
             ("rcpt1", pkt(b"D", b"R" + z("i", "Q1V2")) + pkt(b"R", z(GONE))),
             ("rcpt2", pkt(b"D", b"R" + z("i", "Q1V2")) + pkt(b"R", z(OK)))]
    steps += [("header%d" % i, pkt(b"L", z(n, v))) for i, (n, v) in enumerate(FIELDS, 1)]
    steps += [("eoh", pkt(b"N")), ("body", pkt(b"B", BODY)),
              ("eom", pkt(b"D", b"E" + z("i", "Q1V2")) + pkt(b"E"))]
    say("optneg-v2-steps", lambda: " ".join("%s=%s" % (n, c.ask(d)) for n, d in steps))
    say("optneg-v2-end", c.end)
    c = Conn(port)
    say("optneg-v7", c.negotiate, 7)
    say("optneg-v7-end", c.end)
    c = Conn(port)
    c.send(optneg(6, ALL_ACTIONS & ~SMFIF_DELRCPT))
    say("optneg-no-delrcpt", c.rest)
    c = Conn(port)
    c.send(pkt(b"O", struct.pack(">II", 6, ALL_ACTIONS)))
    say("optneg-short", c.rest)


def scene_one_write(port):
    c = connect(port, "one-write")
    say("one-write", c.ask, message("Q2ONE"), 3)
    # two messages in one write (no MTA does it: the engine answers both)
    say("one-write-two", c.ask,
        message("Q2TWO-A") + message("Q2TWO-B", rcpts=(OK,), settled=True), 4)
    say("one-write-end", c.end)


def scene_byte_by_byte(port):
    c = Conn(port, nodelay=True)
    say("byte-by-byte-optneg", c.negotiate, bytewise=True)
    say("byte-by-byte", lambda: (c.send(message("Q3BYTE"), bytewise=True), c.answers(3))[1])
    say("byte-by-byte-end", c.end)


def scene_macros(port):
    c = connect(port, "macros")
    # "{i}" at each RCPT, none at the end
    say("macros-brace", c.ask, message("Q4BRACE", macro="{i}", emacros=b""), 3)
    # "i" at the end only
    say("macros-plain", c.ask, message("Q4PLAIN", rmacro=False), 3)
    # none: the last message's are gone
    say("macros-none", c.ask, message(None), 3)
    # several in one packet, the queue id last
    say("macros-several", c.ask, message(
        "Q4SEVERAL", rmacro=False,
        emacros=z("{mail_host}", "mx.example", "j", "mta.example", "{i}", "Q4SEVERAL")), 3)
    say("macros-end", c.end)


def scene_abort(port):
    c = connect(port, "abort")
    # after the header (with an invalid X-SMTPAPI), then a message without
    # a queue id (logged NOQUEUE: the aborted one's macros are gone)
    c.send(envelope("Q5ABORTED", fields=[("X-SMTPAPI", "not json")], eoh=False) + pkt(b"A"))
    say("abort-header", c.ask, message(None), 3)
    # after a body chunk (answered: SKIP), then a message as usual
    say("abort-body-chunk", c.ask, envelope("Q5ABORTED2") + pkt(b"B", BODY), 2)
    c.send(pkt(b"A"))
    say("abort-body", c.ask, message("Q5AGAIN"), 3)
    say("abort-end", c.end)


def scene_quit_nc(port):
    c = connect(port, "quit-nc")
    say("quit-nc-first", c.ask, message("Q5FIRST"), 3)
    # QUIT_NC: a new connection on this one, without a new negotiation
    # (NOCONNECT and NOHELO are negotiated: MAIL comes next)
    c.send(pkt(b"K"))
    say("quit-nc-after", c.ask, message("Q5AFTERK"), 3)
    # QUIT_NC within a message (in its header): it is aborted, and the next
    # needs nothing (gone@ was the aborted one's)
    c.send(envelope("Q5ABORTEDK", eoh=False) + pkt(b"K"))
    say("quit-nc-within", c.ask, message("Q5AFTERK2", rcpts=(OK,), settled=True), 1)
    say("quit-nc-end", c.end)


def scene_malformed(port):
    # a connection in the middle of a message all along
    by = connect(port, "bystander")
    by.send(envelope("Q6BYSTANDER"))
    mail = pkt(b"M", z(SENDER))
    rest = pkt(b"R", z(GONE)) + pkt(b"R", z(OK)) + b"".join(
        pkt(b"L", z(n, v)) for n, v in FIELDS) + ending("Q6BAD")
    cases = [
        # the rest of a message after it: answered if the engine went on
        ("zero-length", b"\0\0\0\0" + mail + rest),
        # the length alone: closed without waiting for the data
        ("huge-length", struct.pack(">I", 0x7FFFFFFF)),
        ("over-max", struct.pack(">I", MAX_PACKET + 1)),
        ("unknown-command", pkt(b"Z", b"hello\0") + mail + rest),
        ("mail-no-nul", pkt(b"M", SENDER.encode()) + rest),
        ("header-one-string", mail + pkt(b"R", z(OK)) + pkt(b"L", z("From")) + ending("Q6BAD")),
    ]
    for name, data in cases:
        c = connect(port, "bad-" + name)
        c.send(data)
        say("bad-" + name, c.rest)
        n = Conn(port)
        say("bad-%s-next" % name, n.negotiate)
        say("bad-%s-next-end" % name, n.end)
    # the largest packet taken: a body chunk of 1 MiB + 63 bytes
    c = connect(port, "largest")
    say("largest-packet", c.ask, message("Q6LARGEST", body=b"x" * (MAX_PACKET - 1)), 3)
    say("largest-packet-end", c.end)
    say("bystander", by.ask, ending("Q6BYSTANDER"), 3)
    say("bystander-end", by.end)


def scene_drop(port):
    c = connect(port, "drop-header")
    c.send(envelope("Q7DROP"))
    c.drop()
    say("drop-header-next", lambda: connect(port, "drop-header-next").ask(message("Q7NEXT1"), 3))
    c = connect(port, "drop-mid-packet")
    b = pkt(b"B", BODY)
    c.send(envelope("Q7DROP") + b[:7])
    c.drop()
    say("drop-mid-packet-next", lambda: connect(port, "drop-mid-packet-next").ask(
        message("Q7NEXT2"), 3))
    c = connect(port, "drop-reset")
    c.send(envelope("Q7DROP"))
    time.sleep(0.2)  # read by the milter: a reset while it waits for more
    c.drop(reset=True)
    say("drop-reset-next", lambda: connect(port, "drop-reset-next").ask(message("Q7NEXT3"), 3))


def scene_percent(port):
    c = connect(port, "percent")
    say("percent", c.ask, message("Q8PERCENT", fields=[("X-SMTPAPI", '"50%s %n 100%"')]), 3)
    say("percent-end", c.end)


def expected(kind, t, i):
    return {0: "c s -%s\\0 c" % GONE,
            1: "a",  # needs nothing: accepted at the end of the header
            2: "c s -%s\\0 d" % GONE,  # every recipient dropped: discarded
            3: 'c c y550 5.6.0 invalid X-SMTPAPI header: the value must be a JSON '
               'object, not "t%d-%d"\\0' % (t, i)}[kind]


def scene_parallel(port, threads, messages, log):
    threads, messages = int(threads), int(messages)
    barrier = threading.Barrier(threads)
    wrong, right, opened = [], [0], [0]
    lock = threading.Lock()
    want_opt = None

    def run(t):
        try:
            c = Conn(port)
            barrier.wait(TIMEOUT)
            opt = c.negotiate()
            with lock:
                opened[0] += opt == want_opt
            # every connection negotiated before any goes on: they are
            # served at once, not one after another
            barrier.wait(TIMEOUT)
            for i in range(messages):
                kind = (t + i) % 4
                qid = "Q9P%02dM%d" % (t, i)
                rcpts = [(GONE, OK), (OK,), (GONE,), (OK, GONE)][kind]
                fields = [("X-SMTPAPI", '"t%d-%d"' % (t, i))] if kind == 3 else []
                got = c.ask(message(qid, rcpts=rcpts, fields=fields, settled=kind == 1),
                            1 if kind == 1 else 3)
                with lock:
                    if got == expected(kind, t, i):
                        right[0] += 1
                    else:
                        wrong.append("%s: %s" % (qid, got))
            end = c.end()
            if end != "closed":
                with lock:
                    wrong.append("thread %d: %s" % (t, end))
        except (Closed, OSError, threading.BrokenBarrierError) as e:
            with lock:
                wrong.append("thread %d: %r" % (t, e))

    c = Conn(port)
    want_opt = c.negotiate()
    c.end()
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    print("parallel-optneg: %d of %d connections negotiated at once" % (opened[0], threads))
    print("parallel: %d of %d messages answered right%s" % (
        right[0], threads * messages, "; " + "; ".join(wrong[:5]) if wrong else ""), flush=True)
    # each decision logged once under its own message's queue id (each
    # connection's macros its own)
    seen = {}
    for line in open(log, encoding="utf-8", errors="replace"):
        m = re.match(r"sgmilter: (Q9P\d+M\d+)(: (to=\S+, status=dropped \(bounce\)|"
                     r"reject: invalid X-SMTPAPI))", line)
        if m:
            seen[m.group(1, 2)] = seen.get(m.group(1, 2), 0) + 1
    good, want, bad = 0, 0, []
    for t in range(threads):
        for i in range(messages):
            kind = (t + i) % 4
            if kind == 1:
                continue
            want += 1
            qid = "Q9P%02dM%d" % (t, i)
            tag = ": reject: invalid X-SMTPAPI" if kind == 3 else \
                ": to=%s, status=dropped (bounce)" % GONE
            n = seen.get((qid, tag), 0)
            if n == 1:
                good += 1
            else:
                bad.append("%s logged %d times" % (qid, n))
    print("parallel-log: %d of %d decisions logged once under their queue id%s" % (
        good, want, "; " + "; ".join(bad[:5]) if bad else ""))


def scene_drain(port, pid, log):
    c = connect(port, "drain")
    c.send(envelope("Q9DRAIN"))
    time.sleep(0.3)
    os.kill(int(pid), signal.SIGTERM)
    # sgmilter says it is stopping once it refuses new connections' messages
    until = time.time() + TIMEOUT
    while "sgmilter: stopping: " not in open(log, errors="replace").read():
        if time.time() > until:
            say("drain-stopping", lambda: "not logged in %d s" % TIMEOUT)
            sys.exit(0)
        time.sleep(0.05)
    say("drain-stopping", lambda: "logged")
    # a connection opened after the signal: its message refused (451 4.3.2)
    n = connect(port, "drain-new")
    say("drain-new", n.ask, envelope("Q9NEW"))
    n.send(pkt(b"A"))
    say("drain-new-end", n.end)
    # the message in flight at the signal is served to its end
    say("drain", c.ask, ending("Q9DRAIN"), 3)
    say("drain-end", c.end)


SCENES = {
    "negotiate": scene_negotiate,
    "one-write": scene_one_write,
    "byte-by-byte": scene_byte_by_byte,
    "macros": scene_macros,
    "abort": scene_abort,
    "quit-nc": scene_quit_nc,
    "malformed": scene_malformed,
    "drop": scene_drop,
    "percent": scene_percent,
    "parallel": scene_parallel,
    "drain": scene_drain,
}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in SCENES:
        sys.exit("usage: milter_wire.py PORT SCENE [ARGS] (scenes: %s)" % " ".join(SCENES))
    SCENES[sys.argv[2]](int(sys.argv[1]), *sys.argv[3:])
