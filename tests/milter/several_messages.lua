-- several_messages - six transactions on one milter connection, as an MTA
-- sends them for a client that delivers several messages in one SMTP
-- session.  Each end of message removes exactly that message's suppressed
-- recipients (and none of the others, nor of the messages before it), and
-- nothing of one message leaks into the next: its X-SMTPAPI (group, count
-- of fields), its From (whose key signs), its rejection.
--   -D sock=SOCKET -D mtdir=DIR -D group=GID
-- The store (set up by milter_protocol.sh): gone@ bounced, quit@ globally
-- unsubscribed, spam@ reported spam, left@ unsubscribed from group GID;
-- shop.example has a DKIM key, other.example none.
SCRIPT = "several_messages"
dofile(mtdir .. "/common.lua")
need(group ~= nil, "-D group=GID is missing")

local SHOP = "Shop <news@shop.example>"
local APP = "App <app@other.example>"
local conn = open()

-- 1: a group message: the bounced and the group-unsubscribed recipients go,
-- X-SMTPAPI goes, the unsubscribe fields come, then one signature
scene("1: group message")
envelope(conn, "<news@shop.example>", { "<ok1@example.org>", "<gone@example.org>", "<left@example.org>" })
headers(conn, { { "From", SHOP }, { "To", "undisclosed-recipients:;" }, { "Subject", "first" },
                { "X-SMTPAPI", '{"asm_group_id": ' .. group .. ', "category": ["weekly"]}' } })
eoh(conn)
check(body(conn, "body of the first message\r\n") == SMFIR_CONTINUE,
      "the body of a group message is wanted (SMFIR_CONTINUE)")
eom(conn)
accepted(conn, "end of the group message")
removed(conn, "group message", { "<gone@example.org>", "<left@example.org>" }, { "<ok1@example.org>" })
check(mt.eom_check(conn, MT_HDRDELETE, "X-SMTPAPI"), "X-SMTPAPI removed")
check(mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe"), "List-Unsubscribe added")
check(mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
      "List-Unsubscribe-Post: List-Unsubscribe=One-Click added")
local sig = one_signature(conn, "group message")
check(sig and sig:find("List%-Unsubscribe") ~= nil, "the signature covers List-Unsubscribe (h=)")

-- 2: the same sender, no X-SMTPAPI: left@ is not suppressed outside the
-- group; no unsubscribe fields; nothing removed from the first message again
scene("2: no X-SMTPAPI after a group message")
envelope(conn, "<news@shop.example>", { "<left@example.org>", "<quit@example.org>", "<ok2@example.org>" })
headers(conn, { { "From", SHOP }, { "To", "undisclosed-recipients:;" }, { "Subject", "second" } })
eoh(conn)
check(body(conn, "body of the second message\r\n") == SMFIR_CONTINUE,
      "the body is wanted (the From domain has a key)")
eom(conn)
accepted(conn, "end of the second message")
removed(conn, "second message", { "<quit@example.org>" },
        { "<left@example.org>", "<ok2@example.org>", "<gone@example.org>", "<ok1@example.org>" })
check(not mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe"), "no List-Unsubscribe added (no group)")
check(not mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe-Post"), "no List-Unsubscribe-Post added")
check(not mt.eom_check(conn, MT_HDRCHANGE), "no field changed or removed (there is no X-SMTPAPI)")
sig = one_signature(conn, "second message")
check(sig and sig:find("List%-Unsubscribe") == nil, "the signature does not name List-Unsubscribe (h=)")

-- 3: an invalid X-SMTPAPI: refused at the end of the message with a reply
-- of its own, before any decision (spam@ is not removed: nothing is)
scene("3: invalid X-SMTPAPI")
envelope(conn, "<news@shop.example>", { "<ok3@example.org>", "<spam@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "third" }, { "X-SMTPAPI", '{"asm_group_id": ' } })
eoh(conn)
body(conn, "body of the third message\r\n")
eom(conn)
reply_is(conn, SMFIR_REPLYCODE, "end of a message with invalid X-SMTPAPI")
check(not mt.eom_check(conn, MT_SMTPREPLY, "451", "4.3.0", "temporary failure, try again later"),
      "refused as invalid, not tempfailed")
unchanged(conn, "invalid X-SMTPAPI", { "<spam@example.org>", "<ok3@example.org>" })

-- 4: two X-SMTPAPI fields: 550 5.6.0 with the reason
scene("4: two X-SMTPAPI fields")
envelope(conn, "<news@shop.example>", { "<ok4@example.org>", "<gone@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "fourth" }, { "X-SMTPAPI", '{"category": "a"}' },
                { "X-SMTPAPI", '{"category": "b"}' } })
eoh(conn)
body(conn, "body of the fourth message\r\n")
eom(conn)
reply_is(conn, SMFIR_REPLYCODE, "end of a message with two X-SMTPAPI fields")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.6.0",
                   "invalid X-SMTPAPI header: the message has 2 X-SMTPAPI fields; one is allowed"),
      "550 5.6.0 invalid X-SMTPAPI header: the message has 2 X-SMTPAPI fields; one is allowed")
unchanged(conn, "two X-SMTPAPI fields", { "<gone@example.org>", "<ok4@example.org>" })

-- 5: a valid message after the refused ones, From a domain without a key:
-- accepted, its own suppressed recipient removed, no signature (the From of
-- the messages before does not stay), no unsubscribe fields (a category is
-- not a group)
scene("5: valid message after refused ones")
envelope(conn, "<app@other.example>", { "<spam@example.org>", "<ok5@example.org>" })
headers(conn, { { "From", APP }, { "Subject", "fifth" }, { "X-SMTPAPI", '{"category": ["receipts"]}' } })
eoh(conn)
body(conn, "body of the fifth message\r\n")
eom(conn)
accepted(conn, "end of the valid message after the refused ones")
removed(conn, "fifth message", { "<spam@example.org>" },
        { "<ok5@example.org>", "<gone@example.org>", "<ok4@example.org>", "<ok3@example.org>" })
check(mt.eom_check(conn, MT_HDRDELETE, "X-SMTPAPI"), "X-SMTPAPI removed")
check(#inserted(conn, "DKIM-Signature") == 0, "no DKIM-Signature (other.example has no key)")
check(not mt.eom_check(conn, MT_HDRADD, "List-Unsubscribe"), "no List-Unsubscribe added")

-- 6: every recipient suppressed: discarded, both removed
scene("6: every recipient suppressed")
envelope(conn, "<app@other.example>", { "<gone@example.org>", "<quit@example.org>" })
headers(conn, { { "From", APP }, { "Subject", "sixth" } })
eoh(conn)
body(conn, "body of the sixth message\r\n")
eom(conn)
reply_is(conn, SMFIR_DISCARD, "end of a message with every recipient suppressed")
removed(conn, "sixth message", { "<gone@example.org>", "<quit@example.org>" }, { "<spam@example.org>" })

mt.disconnect(conn)
finish()
