#!/usr/bin/python3
"""smtp_peer.py - a scriptable SMTP server for the integration tests.

Run it with Debian's Python, which has python3-aiosmtpd:

  /usr/bin/python3 tests/integration/smtp_peer.py --port PORT --dir DIR
      [--host 127.0.0.1] [--tls-cert CERT --tls-key KEY] [--require-tls]
      [--auth USER:PASS] [--reply 'PATTERN=CODE TEXT']...
      [--data-reply 'CODE TEXT'] [--size-limit BYTES] [--hostname NAME]
      [--delay 'POINT[:PATTERN]=SECONDS[xCOUNT]']... [--ready FILE]

Every accepted message becomes DIR/NNNNNN.eml (the bytes as received, after
dot-unstuffing, CRLF kept, nothing added) and DIR/NNNNNN.json (the envelope
and session); the .json is in place before the .eml appears.  Every command
line received is appended to DIR/commands.log as "CONN VERB ARGS" (AUTH
credentials replaced by ***).  --ready FILE is written (holding the pid)
once the server listens; SIGTERM or SIGINT stops it cleanly (exit 0) and
removes FILE.

--delay makes the server slow at a chosen point, so that a test can kill its
client at a known instant: POINT is RCPT (the reply to a RCPT whose address
contains PATTERN is held) or DATA (the reply to the end of the data of a
message with an accepted recipient containing PATTERN is held; the message is
stored first, so the server has it although the client never hears so).
PATTERN matches as --reply's does (any case; empty or left out: every one);
the first --delay that matches applies; xCOUNT makes it apply COUNT times at
most (default: always).  Before each delay one line is appended, and flushed,
to DIR/delays.log: "POINT CONN MESSAGE ADDRESS SECONDS" (MESSAGE is the
NNNNNN stored, or - for RCPT or a refused message), so a test can wait for it.

NNNNNN.json: message (NNNNNN), connection (1, 2, ... in accept order),
message_in_connection, helo, esmtp, tls, tls_version, auth_login (or null),
mail_from ("" for <>), mail_options (words as sent), mail_params ({KEY: value}),
rcpt_tos, rcpt_options (a list per accepted recipient), rcpt_params (a dict
per accepted recipient), rejected_rcpts ([address, reply] pairs), bytes.

Command lines are caught where aiosmtpd reads them (StreamReader.readuntil()
called with no separator; DATA lines and AUTH responses pass one), which
leans on aiosmtpd 1.4's internals: Debian 12's python3-aiosmtpd 1.4.3.
"""
import argparse
import asyncio
import collections
import json
import logging
import os
import re
import signal
import ssl
import sys
import warnings

try:
    from aiosmtpd.smtp import SMTP, Envelope, syntax
except ImportError:  # pragma: no cover
    sys.exit("smtp_peer.py: aiosmtpd is missing; run it with /usr/bin/python3 "
             "and install the Debian package python3-aiosmtpd")

# aiosmtpd warns about AUTH without TLS; here that is a deliberate choice.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
# ... and logs a deprecation notice each time it sets session.login_data.
logging.getLogger("mail.log").addFilter(
    lambda record: "login_data is deprecated" not in record.getMessage())

IDENT = "ESMTP smtp_peer"
_CMD = object()  # marks a command read (readuntil() with no separator)


class State:
    """What all connections share."""

    def __init__(self, cfg, tls_context):
        self.cfg = cfg
        self.tls = tls_context
        self.connections = 0
        self.last_message = highest_number(cfg.dir)
        self.active = set()
        self.log_path = os.path.join(cfg.dir, "commands.log")
        self.delays = [dict(d) for d in cfg.delays]  # with a count left each

    async def delay(self, point, addresses, conn, message=None):
        """Hold the reply at POINT when a --delay applies to one of the
        addresses; log it to DIR/delays.log first."""
        for d in self.delays:
            if d["point"] != point or d["left"] == 0:
                continue
            hit = [a for a in addresses if d["pattern"].lower() in a.lower()]
            if not hit:
                continue
            if d["left"] > 0:
                d["left"] -= 1
            number = "-" if message is None else f"{message:06d}"
            with open(os.path.join(self.cfg.dir, "delays.log"), "a",
                      encoding="utf-8") as f:
                f.write(f"{point} {conn} {number} {hit[0]} {d['seconds']:g}\n")
                f.flush()
            await asyncio.sleep(d["seconds"])
            return

    def log(self, line):
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def highest_number(directory):
    """The highest NNNNNN already in DIR, so a restart does not overwrite."""
    n = 0
    for name in os.listdir(directory):
        m = re.fullmatch(r"(\d{6})\.(eml|json)", name)
        if m:
            n = max(n, int(m.group(1)))
    return n


class PeerEnvelope(Envelope):
    def __init__(self):
        super().__init__()
        self.mail_seen = False   # mail_from may be "" (null reverse-path)
        self.mail_params = {}
        self.rcpt_opts = []      # per accepted recipient: list of params
        self.rcpt_params = []    # per accepted recipient: dict
        self.rejected = []       # [address, reply] for refused recipients


class CommandLoggingReader(asyncio.StreamReader):
    """aiosmtpd reads each command line with readuntil() and no separator;
    DATA lines and AUTH responses are read with an explicit separator (and
    readline() passes one too), so only command lines are logged."""

    _sg_peer = None
    _sg_overlong = False

    async def readuntil(self, separator=_CMD):
        if separator is not _CMD:
            return await super().readuntil(separator)
        try:
            line = await super().readuntil(b"\n")
        except asyncio.LimitOverrunError:
            self._sg_overlong = True
            raise
        if self._sg_overlong:
            self._sg_overlong = False
            self._sg_peer.log_command(None)
        else:
            self._sg_peer.log_command(line)
        return line


MAIL_PARAMS = ("BODY", "SIZE", "RET", "ENVID")
RCPT_PARAMS = ("NOTIFY", "ORCPT")


class Peer(SMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, state, loop):
        self.state = state
        self.cfg = state.cfg
        state.connections += 1
        self.conn = state.connections
        self.conn_messages = 0
        self._in_auth = False
        user, _, password = (self.cfg.auth or "").partition(":")
        creds = (user.encode(), password.encode())

        def check(mechanism, login, pw):
            return (login, pw) == creds

        super().__init__(
            Handler(),
            data_size_limit=self.cfg.size_limit or None,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=self.cfg.hostname,
            ident=IDENT,
            tls_context=state.tls,
            require_starttls=False,  # done here, with an enhanced code
            auth_required=bool(self.cfg.auth) and not self.cfg.unauth_rcpt,
            auth_require_tls=state.tls is not None,
            auth_callback=check,
            loop=loop,
        )
        # Room for DSN parameters (RFC 3461 4: +100 for MAIL, +500 for RCPT);
        # an instance dict, as aiosmtpd's class-level one grows per EHLO.
        self.command_size_limits = collections.defaultdict(
            lambda: 512, {"MAIL": 1000, "RCPT": 1000})

    # --- plumbing -------------------------------------------------------

    def _create_envelope(self):
        return PeerEnvelope()

    def _client_connected_cb(self, reader, writer):
        reader.__class__ = CommandLoggingReader
        reader._sg_peer = self
        super()._client_connected_cb(reader, writer)

    def connection_made(self, transport):
        if self._original_transport is None:  # not the STARTTLS re-entry
            self.state.active.add(self)
        super().connection_made(transport)

    def connection_lost(self, error):
        self.state.active.discard(self)
        super().connection_lost(error)

    def log_command(self, line):
        if line is None:
            text = "(command line too long)"
        elif self._in_auth:
            text = "(AUTH response, redacted)"
        else:
            text = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            arg = arg.strip()
            if verb == "AUTH":
                words = arg.split()
                arg = " ".join(words[:1] + (["***"] if len(words) > 1 else []))
            text = verb + (" " + arg if arg else "")
        self.state.log(f"{self.conn} {text}")

    def in_tls(self):
        return self._tls_protocol is not None and self.session.ssl is not None

    async def check_helo_needed(self, helo="HELO"):
        if not self.session.host_name:
            want = "HELO/EHLO" if helo == "HELO" else helo
            await self.push(f"503 5.5.1 Error: send {want} first")
            return True
        return False

    async def check_tls_needed(self):
        if self.cfg.require_tls and not self.in_tls():
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
            return True
        return False

    def _params(self, words, allowed):
        """Parse ESMTP parameters; return (dict, None) or (None, reply)."""
        params = {}
        for word in words:
            key, eq, value = word.partition("=")
            key = key.upper()
            if not key.isalnum() or (eq and not value):
                return None, "501 5.5.4 Bad parameter syntax: " + word
            if key not in allowed:
                return None, f"555 5.5.4 Unsupported parameter: {key}"
            if key in params:
                return None, f"501 5.5.4 Duplicate parameter: {key}"
            params[key] = value if eq else True
        return params, None

    # --- commands -------------------------------------------------------

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname):
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        ext = ["PIPELINING", f"SIZE {self.cfg.size_limit}", "8BITMIME", "DSN",
               "ENHANCEDSTATUSCODES"]
        if self.cfg.no_8bitmime:
            ext.remove("8BITMIME")
        if self.tls_context and not self._tls_protocol:
            ext.append("STARTTLS")
        if self.cfg.auth and (self.tls_context is None or self._tls_protocol):
            ext.append("AUTH PLAIN LOGIN")
        lines = [self.hostname] + ext
        for line in lines[:-1]:
            await self.push("250-" + line)
        await self.push("250 " + lines[-1])

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        if not self.cfg.auth:
            await self.push("503 5.5.1 Error: authentication not enabled")
            return
        if self.session.host_name and await self.check_tls_needed():
            return
        self._in_auth = True
        try:
            await super().smtp_AUTH(arg)
        finally:
            self._in_auth = False

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg):
        if await self.check_helo_needed():
            return
        if await self.check_tls_needed():
            return
        if await self.check_auth_needed("MAIL"):
            return
        syntaxerr = "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]"
        arg = self._strip_command_keyword("FROM:", arg or "")
        if arg is None:
            return await self.push(syntaxerr)
        address, rest = self._getaddr(arg)
        if address is None:
            return await self.push("553 5.1.3 Error: malformed address")
        if not address:
            return await self.push(syntaxerr)
        if address == "<>":
            address = ""
        words = rest.split()
        if words and not self.session.extended_smtp:
            return await self.push(syntaxerr)
        if self.envelope.mail_seen:
            return await self.push("503 5.5.1 Error: nested MAIL command")
        params, err = self._params(words, MAIL_PARAMS)
        if err:
            return await self.push(err)
        body = params.get("BODY")
        if body is not None and self.cfg.no_8bitmime:
            return await self.push("555 5.5.4 BODY not supported")
        if body is not None and str(body).upper() not in ("7BIT", "8BITMIME"):
            return await self.push("501 5.5.4 BODY must be 7BIT or 8BITMIME")
        size = params.get("SIZE")
        if size is not None:
            if size is True or not size.isdigit():
                return await self.push("501 5.5.4 Bad SIZE parameter")
            if self.cfg.size_limit and int(size) > self.cfg.size_limit:
                return await self.push(
                    "552 5.3.4 Message size exceeds fixed maximum message size")
        ret = params.get("RET")
        if ret is not None and str(ret).upper() not in ("FULL", "HDRS"):
            return await self.push("501 5.5.4 RET must be FULL or HDRS")
        if params.get("ENVID") is True:
            return await self.push("501 5.5.4 ENVID needs a value")
        env = self.envelope
        env.mail_seen = True
        env.mail_from = address
        env.mail_options = words
        env.mail_params = params
        await self.push("250 2.1.0 Ok")

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg):
        if await self.check_helo_needed():
            return
        if await self.check_tls_needed():
            return
        if await self.check_auth_needed("RCPT"):
            return
        if self.cfg.unauth_rcpt and not self.session.authenticated:
            return await self.push(self.cfg.unauth_rcpt)
        if not self.envelope.mail_seen:
            return await self.push("503 5.5.1 Error: need MAIL command")
        syntaxerr = "501 5.5.4 Syntax: RCPT TO:<address> [parameters]"
        arg = self._strip_command_keyword("TO:", arg or "")
        if arg is None:
            return await self.push(syntaxerr)
        address, rest = self._getaddr(arg)
        if address is None:
            return await self.push("553 5.1.3 Error: malformed address")
        if not address or address == "<>":
            return await self.push(syntaxerr)
        words = rest.split()
        if words and not self.session.extended_smtp:
            return await self.push(syntaxerr)
        params, err = self._params(words, RCPT_PARAMS)
        if err:
            return await self.push(err)
        notify = params.get("NOTIFY")
        if notify is not None:
            kinds = str(notify).upper().split(",")
            if not (kinds == ["NEVER"] or
                    set(kinds) <= {"SUCCESS", "FAILURE", "DELAY"}):
                return await self.push("501 5.5.4 Bad NOTIFY parameter")
        orcpt = params.get("ORCPT")
        if orcpt is not None and (orcpt is True or ";" not in orcpt):
            return await self.push("501 5.5.4 Bad ORCPT parameter")
        reply = "250 2.1.5 Ok"
        for pattern, status in self.cfg.replies:
            if pattern.lower() in address.lower():
                reply = status
                break
        await self.state.delay("RCPT", [address], self.conn)
        env = self.envelope
        if reply.startswith("2"):
            env.rcpt_tos.append(address)
            env.rcpt_opts.append(words)
            env.rcpt_params.append(params)
        else:
            env.rejected.append([address, reply])
        await self.push(reply)

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        if await self.check_helo_needed():
            return
        if await self.check_tls_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            return await self.push("503 5.5.1 Error: need RCPT command")
        if arg:
            return await self.push("501 5.5.4 Syntax: DATA")
        await super().smtp_DATA(arg)

    # --- storing a message ----------------------------------------------

    def store(self, envelope):
        state = self.state
        state.last_message += 1
        n = state.last_message
        self.conn_messages += 1
        content = envelope.original_content
        session = self.session
        login = None
        if session.authenticated:
            login = getattr(session.auth_data, "login", None)
        if isinstance(login, bytes):
            login = login.decode("utf-8", "backslashreplace")
        tls_version = None
        if self.in_tls():
            sslobj = session.ssl.get("ssl_object")
            tls_version = sslobj.version() if sslobj is not None else None
        meta = {
            "message": n,
            "connection": self.conn,
            "message_in_connection": self.conn_messages,
            "helo": session.host_name,
            "esmtp": bool(session.extended_smtp),
            "tls": self.in_tls(),
            "tls_version": tls_version,
            "auth_login": login,
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "mail_params": envelope.mail_params,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_opts,
            "rcpt_params": envelope.rcpt_params,
            "rejected_rcpts": envelope.rejected,
            "bytes": len(content),
        }
        d = self.cfg.dir
        base = f"{n:06d}"
        tmp = os.path.join(d, f".{base}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(d, base + ".json"))
        tmp = os.path.join(d, f".{base}.eml.tmp")
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, os.path.join(d, base + ".eml"))
        return n


class Handler:
    async def handle_DATA(self, server, session, envelope):
        reply = server.cfg.data_reply
        if reply and not reply.startswith("2"):
            await server.state.delay("DATA", envelope.rcpt_tos, server.conn)
            return reply
        n = server.store(envelope)
        await server.state.delay("DATA", envelope.rcpt_tos, server.conn, n)
        return reply or f"250 2.0.0 Ok: queued as {n:06d}"

    async def handle_RSET(self, server, session, envelope):
        return "250 2.0.0 Ok"

    async def handle_NOOP(self, server, session, envelope, arg):
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server, session, envelope):
        return "221 2.0.0 Bye"


# --- main -----------------------------------------------------------------

REPLY_RE = r"[2-5]\d\d(?: .*)?"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="smtp_peer.py",
        description="Scriptable SMTP server for sendguard's integration tests.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True,
                   help="where NNNNNN.eml/.json and commands.log go (created)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--hostname", default="localhost",
                   help="name in the greeting and EHLO reply")
    p.add_argument("--tls-cert", help="PEM certificate (chain); offers STARTTLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--require-tls", action="store_true",
                   help="530 5.7.0 to MAIL/RCPT/DATA/AUTH before STARTTLS")
    p.add_argument("--auth", metavar="USER:PASS",
                   help="offer AUTH PLAIN LOGIN and require it before MAIL")
    p.add_argument("--no-8bitmime", action="store_true",
                   help="do not offer 8BITMIME (BODY=8BITMIME is then refused)")
    p.add_argument("--unauth-rcpt", metavar="CODE TEXT",
                   help="with --auth: MAIL is allowed without AUTH, and RCPT "
                        "then gets this reply (as a relay that refuses to relay)")
    p.add_argument("--reply", action="append", default=[],
                   metavar="PATTERN=CODE TEXT",
                   help="RCPT whose address contains PATTERN (any case) gets "
                        "this reply; first match wins; repeatable")
    p.add_argument("--data-reply", metavar="CODE TEXT",
                   help="reply to the end of DATA; a 4xx/5xx one stores nothing")
    p.add_argument("--delay", action="append", default=[],
                   metavar="POINT[:PATTERN]=SECONDS[xCOUNT]",
                   help="hold the reply to RCPT or to the end of DATA for "
                        "SECONDS when a recipient contains PATTERN, COUNT "
                        "times at most; logged to DIR/delays.log first; "
                        "repeatable")
    p.add_argument("--size-limit", type=int, default=33554432,
                   help="SIZE advertised and enforced (0: no limit)")
    p.add_argument("--ready", metavar="FILE",
                   help="write the pid here once listening")
    a = p.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if a.require_tls and not a.tls_cert:
        p.error("--require-tls needs --tls-cert and --tls-key")
    if a.auth is not None and ":" not in a.auth:
        p.error("--auth wants USER:PASS")
    replies = []
    for r in a.reply:
        m = re.fullmatch(r"(.*?)=(" + REPLY_RE + ")", r)
        if not m:
            p.error(f"--reply wants 'PATTERN=CODE TEXT', not {r!r}")
        replies.append((m.group(1), m.group(2)))
    a.replies = replies
    delays = []
    for d in a.delay:
        m = re.fullmatch(r"(RCPT|DATA)(?::(.*))?=(\d+(?:\.\d+)?)(?:x(\d+))?",
                         d, re.IGNORECASE)
        if not m:
            p.error("--delay wants 'RCPT|DATA[:PATTERN]=SECONDS[xCOUNT]', "
                    f"not {d!r}")
        delays.append({"point": m.group(1).upper(), "pattern": m.group(2) or "",
                       "seconds": float(m.group(3)),
                       "left": int(m.group(4)) if m.group(4) else -1})
    a.delays = delays
    if a.data_reply is not None and not re.fullmatch(REPLY_RE, a.data_reply):
        p.error(f"--data-reply wants 'CODE TEXT', not {a.data_reply!r}")
    if a.size_limit < 0:
        p.error("--size-limit must be >= 0")
    return a


def write_ready(path):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


async def serve(cfg, tls_context):
    loop = asyncio.get_running_loop()
    state = State(cfg, tls_context)
    try:
        server = await loop.create_server(lambda: Peer(state, loop),
                                          cfg.host, cfg.port)
    except OSError as e:
        print(f"smtp_peer.py: cannot listen on {cfg.host}:{cfg.port}: {e}",
              file=sys.stderr)
        return 2
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if cfg.ready:
        write_ready(cfg.ready)
    try:
        await stop.wait()
    finally:
        server.close()
        for peer in list(state.active):
            if peer.transport is not None:
                peer.transport.close()
        await asyncio.sleep(0.05)
        if cfg.ready:
            try:
                os.unlink(cfg.ready)
            except FileNotFoundError:
                pass
    return 0


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(cfg.dir, exist_ok=True)
    tls_context = None
    if cfg.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return asyncio.run(serve(cfg, tls_context))


if __name__ == "__main__":
    sys.exit(main())
