-- aborted - transactions the MTA aborts (the client sent RSET, or went
-- away, or another milter refused) or just leaves for a new MAIL, then new
-- ones on the same connection:
-- each new message is decided afresh, with nothing of the aborted one (its
-- recipients, its X-SMTPAPI, its From, its header, its body).
--   -D sock=SOCKET -D mtdir=DIR -D group=GID -D out=DIR
-- Writes OUT/aborted.eml: the last message as the MTA would hold it after
-- the milter's changes, for the runner to verify its DKIM signature.
SCRIPT = "aborted"
dofile(mtdir .. "/common.lua")
need(group ~= nil and out ~= nil, "-D group=GID and -D out=DIR are needed")

local SHOP = "Shop <news@shop.example>"
local conn = open()

-- 1: MAIL, RCPT (one of them suppressed), a group's X-SMTPAPI, From a
-- signing domain - then abort
scene("1: abort after the header fields")
envelope(conn, "<news@shop.example>", { "<gone@example.org>", "<ok1@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "aborted one" },
                { "X-SMTPAPI", '{"asm_group_id": ' .. group .. '}' } })
step("abort", mt.abort(conn))

-- 2: a message that needs nothing: accepted at the end of its header (the
-- aborted X-SMTPAPI and From do not make its body wanted, and gone@, the
-- aborted one's suppressed recipient, is not among its recipients: it
-- would have to be removed at the end)
scene("2: a message needing nothing after the abort")
envelope(conn, "<app@other.example>", { "<ok2@example.org>" })
headers(conn, { { "From", "App <app@other.example>" }, { "Subject", "second" } })
settled(conn, "message after the abort")

-- 3: abort while the body is being collected (From a signing domain)
scene("3: abort during the body")
envelope(conn, "<news@shop.example>", { "<ok3@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "aborted three" } })
eoh(conn)
r = body(conn, lines(40), 700)
check(r == SMFIR_CONTINUE, "the body is wanted (SMFIR_CONTINUE), got " .. rname(r))
step("abort", mt.abort(conn))

-- 4: abort right after MAIL
scene("4: abort after MAIL")
envelope(conn, "<news@shop.example>", {})
step("abort", mt.abort(conn))

-- 5: a new MAIL straight after the header, with no abort between (libmilter
-- aborts the old transaction itself): the new message is decided afresh.
-- It needs a change (spam@ is suppressed) but not its body: skipped, and
-- at its end spam@ alone is removed, none of the unfinished one's
scene("5: MAIL again without an abort")
envelope(conn, "<news@shop.example>", { "<gone@example.org>", "<ok5@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "never finished" },
                { "X-SMTPAPI", '{"asm_group_id": ' .. group .. '}' } })
envelope(conn, "<app@other.example>", { "<spam@example.org>", "<ok6@example.org>" })
headers(conn, { { "From", "App <app@other.example>" }, { "Subject", "sixth" } })
eoh(conn)
local r = body(conn, "body of the sixth message\r\n")
check(r == SMFIR_SKIP, "the body is skipped (SMFIR_SKIP), got " .. rname(r))
eom(conn)
accepted(conn, "end of the message after the unfinished one")
unchanged(conn, "message after the unfinished one",
          { "<gone@example.org>", "<ok5@example.org>", "<ok6@example.org>" })
removed(conn, "message after the unfinished one", { "<spam@example.org>" }, {})

-- 6: a complete signed message: one signature, over its own header and
-- body only (the runner verifies OUT/aborted.eml)
scene("6: a complete message after the aborts")
local fields = { { "From", SHOP }, { "To", "ok7@example.org" }, { "Subject", "seventh, complete" },
                 { "Date", "Mon, 23 Nov 2026 10:00:00 +0000" },
                 { "Message-ID", "<seventh@shop.example>" } }
local text = "the seventh message's own body\r\n\r\n  with  some  white space \r\n"
envelope(conn, "<news@shop.example>", { "<ok7@example.org>" })
headers(conn, fields)
eoh(conn)
check(body(conn, text) == SMFIR_CONTINUE, "the body is wanted")
eom(conn)
accepted(conn, "end of the complete message")
removed(conn, "complete message", {}, { "<ok7@example.org>", "<ok3@example.org>", "<gone@example.org>" })
check(not mt.eom_check(conn, MT_HDRADD), "nothing appended (no group, the aborted X-SMTPAPI is gone)")
check(not mt.eom_check(conn, MT_HDRCHANGE), "no field changed or removed")
local sig = one_signature(conn, "complete message")
save_message(out .. "/aborted.eml", fields, text, sig)

-- 7: a new connection, aborted in the body, then dropped without QUIT
scene("7: connection dropped in an aborted body")
local c2 = open()
envelope(c2, "<news@shop.example>", { "<ok8@example.org>" })
headers(c2, { { "From", SHOP }, { "Subject", "dropped" } })
eoh(c2)
body(c2, lines(20))
step("abort", mt.abort(c2))
mt.disconnect(c2, false)

mt.disconnect(conn)
finish()
