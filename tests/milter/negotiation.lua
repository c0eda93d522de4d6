-- negotiation - the milter asks the MTA only for what it uses: the actions
-- it takes (remove recipients, add and change header fields, replace the
-- body: tracking rewrites it), every step it needs (MAIL, RCPT, the header,
-- its end, the body), a reply only at the end of the header, the body and
-- the end, and leave to skip the body.  A message that needs nothing is
-- accepted at the end of its header.  One that needs a change but not its
-- body gets SMFIR_SKIP at its first body chunk when the MTA offered
-- SMFIP_SKIP (never when it did not, whatever other connections offered)
-- and at its end that change alone.  An MTA that cannot remove recipients
-- is refused.
--   -D sock=SOCKET -D mtdir=DIR
SCRIPT = "negotiation"
dofile(mtdir .. "/common.lua")

local ALL_STEPS = 0x001FFFFF -- SMFI_CURR_PROT: everything libmilter knows
local ALL_ACTIONS = 0x000001FF -- SMFI_CURR_ACTS

-- plain CONN WHAT - a message whose body nobody needs (no X-SMTPAPI, From a
-- domain without a key, no default group), to gone@ (a bounce: removed at
-- the end) and ok@; the reply to its first body chunk
local function plain(conn, what)
    envelope(conn, "<app@other.example>", { "<gone@example.org>", "<ok@example.org>" })
    headers(conn, { { "From", "App <app@other.example>" }, { "Subject", what } })
    eoh(conn)
    step("body chunk", mt.bodystring(conn, "a body nobody needs\r\n"))
    return mt.getreply(conn)
end

-- finish_plain CONN WHAT - the rest of it: more body (as an MTA that was
-- not told to skip sends it), then an end that removes gone@ alone
local function finish_plain(conn, what, skipped)
    if not skipped then
        local r = body(conn, lines(300), 8000)
        check(r == SMFIR_CONTINUE, what .. ": the rest of the body continued, got " .. rname(r))
    end
    eom(conn)
    accepted(conn, what .. ": end of message")
    unchanged(conn, what, { "<ok@example.org>" })
    removed(conn, what, { "<gone@example.org>" }, {})
end

-- 1: what it asks for when the MTA offers everything
scene("1: negotiation with everything offered")
local conn = open(ALL_STEPS, ALL_ACTIONS)
for _, a in ipairs({ "SMFIF_DELRCPT", "SMFIF_CHGHDRS", "SMFIF_ADDHDRS", "SMFIF_CHGBODY" }) do
    check(mt.test_action(conn, _G[a]), "asks for " .. a)
end
check(mt.test_action(conn, SMFIF_SETSYMLIST), "asks for SMFIF_SETSYMLIST (only the macros it reads)")
for _, a in ipairs({ "SMFIF_ADDRCPT", "SMFIF_QUARANTINE", "SMFIF_CHGFROM",
                     "SMFIF_ADDRCPT_PAR" }) do
    if _G[a] ~= nil then
        check(not mt.test_action(conn, _G[a]), "does not ask for " .. a)
    end
end
check(mt.test_option(conn, SMFIP_SKIP), "asks for SMFIP_SKIP (leave to skip the body)")
for _, o in ipairs({ "SMFIP_NOMAIL", "SMFIP_NORCPT", "SMFIP_NOHDRS", "SMFIP_NOBODY",
                     "SMFIP_NR_BODY" }) do
    check(not mt.test_option(conn, _G[o]), "does not ask for " .. o)
end
-- no reply awaited but at the end of the header (a message that needs
-- nothing is accepted there), the body (to skip it) and the end: each
-- reply is a round trip
for _, o in ipairs({ "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_MAIL", "SMFIP_NR_RCPT",
                     "SMFIP_NR_DATA", "SMFIP_NR_UNKN", "SMFIP_NR_HDR" }) do
    check(mt.test_option(conn, _G[o]), "asks for no reply: " .. o)
end
check(not mt.test_option(conn, SMFIP_NR_EOH), "answers at the end of the header (no SMFIP_NR_EOH)")
for _, o in ipairs({ "SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOUNKNOWN", "SMFIP_NODATA" }) do
    check(mt.test_option(conn, _G[o]), "asks not to be sent what it does not use: " .. o)
end
check(not mt.test_option(conn, SMFIP_NOEOH), "asks for the end of the header (no SMFIP_NOEOH)")

-- 2: on that connection, a message needing nothing: accepted at the end of
-- its header; one needing a change but not its body: skipped, that change
scene("2: a message needing nothing")
envelope(conn, "<app@other.example>", { "<ok@example.org>" })
headers(conn, { { "From", "App <app@other.example>" }, { "Subject", "needs nothing" } })
settled(conn, "a message needing nothing")
scene("2: a message needing a change but not its body, SMFIP_SKIP offered")
local r = plain(conn, "plain, skip offered")
check(r == SMFIR_SKIP, "first body chunk answered SMFIR_SKIP, got " .. rname(r))
finish_plain(conn, "plain, skip offered", true)
mt.disconnect(conn)

-- 3: an MTA that does not offer SMFIP_SKIP (milter protocol 2 to 5, or a
-- Postfix told milter_protocol = 2): the milter does not ask for it and
-- never answers SMFIR_SKIP
scene("3: a message needing nothing, SMFIP_SKIP not offered")
conn = open(ALL_STEPS - SMFIP_SKIP, ALL_ACTIONS)
check(not mt.test_option(conn, SMFIP_SKIP), "does not ask for SMFIP_SKIP when not offered")
r = plain(conn, "plain, no skip")
check(r == SMFIR_CONTINUE, "first body chunk answered SMFIR_CONTINUE, got " .. rname(r))
finish_plain(conn, "plain, no skip", r == SMFIR_SKIP)
mt.disconnect(conn)

-- 4: two MTAs at once (say a Postfix with milter_protocol = 6 and one with
-- 2, or sendmail and Postfix), one offering SMFIP_SKIP and one not: what
-- each connection is answered depends on its own negotiation only
scene("4: connections with different offers")
local noskip = open(ALL_STEPS - SMFIP_SKIP, ALL_ACTIONS)
local skip = open(ALL_STEPS, ALL_ACTIONS)
r = plain(noskip, "plain on the connection without skip")
check(r == SMFIR_CONTINUE,
      "a connection that did not offer SMFIP_SKIP is never answered SMFIR_SKIP, even after " ..
      "another connection negotiated it; got " .. rname(r))
finish_plain(noskip, "plain on the connection without skip", r == SMFIR_SKIP)
mt.disconnect(noskip)
noskip = open(ALL_STEPS - SMFIP_SKIP, ALL_ACTIONS)
r = plain(skip, "plain on the connection with skip")
check(r == SMFIR_SKIP,
      "a connection that offered SMFIP_SKIP is answered SMFIR_SKIP, even after another " ..
      "connection negotiated without it; got " .. rname(r))
finish_plain(skip, "plain on the connection with skip", r == SMFIR_SKIP)
mt.disconnect(skip)
mt.disconnect(noskip)

-- 5: an MTA that cannot remove recipients: the milter refuses it (the MTA
-- then applies its milter_default_action) rather than let suppressed
-- recipients through
scene("5: SMFIF_DELRCPT not offered")
conn = mt.connect(sock, 40, 0.25)
need(conn ~= nil, "cannot connect to " .. sock)
-- (refused: the connection closed, which miltertest reports on stderr as
-- "read(N): returned 0", or a reply other than the negotiation's)
r = mt.negotiate(conn, 6, ALL_STEPS, ALL_ACTIONS - SMFIF_DELRCPT)
check(r ~= nil or not mt.test_action(conn, SMFIF_ADDHDRS),
      "the negotiation is refused when SMFIF_DELRCPT is not offered")
mt.disconnect(conn, false)

finish()
