-- common.lua - shared by the miltertest(8) scripts of tests/milter, which
-- tests/integration/milter_protocol.sh runs against a private sgmilter:
--   miltertest -D sock=inet:PORT@127.0.0.1 -D mtdir=DIR [-D name=value...] -s SCRIPT
-- and which load this file with dofile(mtdir .. "/common.lua").
--
-- A failed check is recorded and the script goes on (each scenario starts
-- from a state of its own), so that one run names every check that fails;
-- finish() prints "CHECKS n" (those passed) for the runner, then, if any
-- failed, ends the script with error() listing them (miltertest exits 1).
-- need() is for what the rest cannot do without (a connection, a protocol
-- step): it ends the script at once.
--
-- miltertest's limits, worth knowing before writing a scenario: mt.header
-- and mt.rcptto copy into a 1024-byte buffer (keep header fields well under
-- 1000 bytes); a reply text given at the header or body stage is not kept
-- (only its code, SMFIR_REPLYCODE; texts are checked at EOM with
-- MT_SMTPREPLY, or by the runner's own client); a body chunk must stay
-- under libmilter's 65535 bytes; mt.negotiate(conn, version, steps,
-- actions) takes the protocol steps before the actions, whatever its
-- manual page says; and Debian's miltertest does not print a script's
-- error, so finish() prints it on stderr itself.

if sock == nil then
    io.stderr:write("run me as miltertest -D sock=inet:PORT@127.0.0.1 -D mtdir=DIR -s SCRIPT\n")
    error("no -D sock", 0)
end

SCRIPT = SCRIPT or "milter"
local passed = 0
local failed = {}
local scenario = "start"

-- scene NAME - what the following checks are about (in failure messages)
function scene(name)
    scenario = name
    mt.echo("-- " .. name)
end

-- check COND WHAT - a check; a failure is recorded with the scenario
function check(cond, what)
    if cond then
        passed = passed + 1
    else
        failed[#failed + 1] = "[" .. scenario .. "] " .. what
        mt.echo("FAILED: [" .. scenario .. "] " .. what)
    end
    return cond
end

-- need COND WHAT - a precondition: the script ends here without it
function need(cond, what)
    if not cond then
        failed[#failed + 1] = "[" .. scenario .. "] " .. what .. " (the script stopped here)"
        finish()
    end
    passed = passed + 1
end

-- finish - the verdict: error() listing the failed checks (printed on
-- stderr too: Debian's miltertest does not print a script's error), or the
-- count on stdout
function finish()
    mt.echo("CHECKS " .. passed)
    if #failed > 0 then
        local msg = SCRIPT .. ": " .. #failed .. " check(s) failed (" .. passed .. " passed):\n  " ..
                    table.concat(failed, "\n  ")
        io.stderr:write(msg, "\n")
        error(msg, 0)
    end
end

-- The replies by name, for messages.
local names = {}
for _, n in ipairs({ "SMFIR_CONTINUE", "SMFIR_ACCEPT", "SMFIR_REJECT", "SMFIR_TEMPFAIL",
                     "SMFIR_DISCARD", "SMFIR_REPLYCODE", "SMFIR_SKIP" }) do
    if _G[n] ~= nil then names[_G[n]] = n end
end

function rname(r)
    if r == nil then return "nothing" end
    if names[r] then return names[r] end
    if r == 0 then return "no reply" end
    return string.format("'%s'", string.char(math.floor(r)))
end

-- step WHAT ERR - a protocol step (mt.* returns nil, or an error string)
function step(what, err)
    if err ~= nil then
        need(false, what .. " failed: " .. tostring(err))
    end
end

-- reply_is CONN WANT WHAT - the milter's last reply
function reply_is(conn, want, what)
    local r = mt.getreply(conn)
    return check(r == want, what .. ": expected " .. rname(want) .. ", got " .. rname(r))
end

-- accepted CONN WHAT - the EOM reply of a message let through
function accepted(conn, what)
    local r = mt.getreply(conn)
    return check(r == SMFIR_CONTINUE or r == SMFIR_ACCEPT,
                 what .. ": expected the message accepted (SMFIR_CONTINUE or SMFIR_ACCEPT), got " ..
                 rname(r))
end

-- open [STEPS ACTIONS] - a connection to the milter, negotiated (with what
-- the MTA offers: miltertest's defaults, all of libmilter's, when nil) and
-- told of a client
function open(steps, actions)
    local conn = mt.connect(sock, 40, 0.25)
    need(conn ~= nil, "cannot connect to " .. sock)
    step("option negotiation", mt.negotiate(conn, 6, steps, actions))
    -- a step the milter asked not to be sent is not sent (miltertest would
    -- send it anyway, and wait for a reply that never comes)
    if not mt.test_option(conn, SMFIP_NOCONNECT) then
        step("connection information", mt.conninfo(conn, "client.example", "192.0.2.10"))
        need(mt.getreply(conn) == SMFIR_CONTINUE, "the connection was refused: " .. rname(mt.getreply(conn)))
    end
    return conn
end

-- envelope CONN SENDER RCPTS - MAIL and RCPT (addresses as "<a@b>")
function envelope(conn, sender, rcpts)
    queue_ids = (queue_ids or 0) + 1
    mt.macro(conn, SMFIC_MAIL, "i", string.format("%s%d", SCRIPT, queue_ids))
    step("MAIL", mt.mailfrom(conn, sender))
    reply_is(conn, SMFIR_CONTINUE, "reply to MAIL " .. sender)
    for _, r in ipairs(rcpts) do
        step("RCPT", mt.rcptto(conn, r))
        reply_is(conn, SMFIR_CONTINUE, "reply to RCPT " .. r)
    end
end

-- headers CONN FIELDS - each { name, value } sent, each expected continued
-- (one check for them all: the first other reply is reported)
function headers(conn, fields)
    for i, f in ipairs(fields) do
        step("header " .. f[1], mt.header(conn, f[1], f[2]))
        local r = mt.getreply(conn)
        if r ~= SMFIR_CONTINUE then
            check(false, "reply to header field " .. i .. " (" .. f[1] .. "): expected " ..
                         "SMFIR_CONTINUE, got " .. rname(r))
            return
        end
    end
    check(true)
end

-- eoh CONN [WANT] - the end of the header, expected answered WANT (default
-- SMFIR_CONTINUE: the message goes on to its body and its end)
function eoh(conn, want)
    if mt.test_option(conn, SMFIP_NOEOH) then
        return
    end
    step("end of header", mt.eoh(conn))
    reply_is(conn, want or SMFIR_CONTINUE, "reply to the end of the header")
end

-- settled CONN WHAT - a message nothing will change (no recipient dropped,
-- no X-SMTPAPI, no key for its From domain, no group, no tracking, no return
-- path) is accepted at the end of its header: the MTA sends neither its
-- body nor its end, and aborts the transaction when it is over, as Postfix
-- does
function settled(conn, what)
    step("end of header", mt.eoh(conn))
    reply_is(conn, SMFIR_ACCEPT, what .. ": accepted at the end of the header")
    step("abort", mt.abort(conn))
end

-- body CONN TEXT [CHUNK] - the body in chunks of CHUNK bytes (default all
-- at once); stops at the first reply other than SMFIR_CONTINUE.  Returns
-- that reply and how many bytes had been sent when it came.
function body(conn, text, chunk)
    chunk = chunk or #text
    local sent = 0
    while sent < #text do
        local piece = text:sub(sent + 1, sent + chunk)
        step("body chunk", mt.bodystring(conn, piece))
        sent = sent + #piece
        local r = mt.getreply(conn)
        if r ~= SMFIR_CONTINUE then return r, sent end
    end
    return SMFIR_CONTINUE, sent
end

-- eom CONN - the end of the message; the EOM reply is mt.getreply(conn)
function eom(conn)
    step("end of message", mt.eom(conn))
end

-- inserted CONN NAME - the values of the fields NAME added or inserted at EOM
function inserted(conn, name)
    local all = {}
    while true do
        local v = mt.getheader(conn, name, #all)
        if v == nil then return all end
        all[#all + 1] = v
    end
end

-- unchanged CONN WHAT RCPTS - no modification at all at EOM: no field added,
-- inserted or changed, no body replaced, no quarantine, none of RCPTS removed
function unchanged(conn, what, rcpts)
    check(not mt.eom_check(conn, MT_HDRADD), what .. ": no header field added")
    check(not mt.eom_check(conn, MT_HDRINSERT), what .. ": no header field inserted")
    check(not mt.eom_check(conn, MT_HDRCHANGE), what .. ": no header field changed or removed")
    check(not mt.eom_check(conn, MT_BODYCHANGE), what .. ": the body not replaced")
    check(not mt.eom_check(conn, MT_QUARANTINE), what .. ": not quarantined")
    for _, r in ipairs(rcpts or {}) do
        check(not mt.eom_check(conn, MT_RCPTDELETE, r), what .. ": " .. r .. " not removed")
    end
end

-- removed CONN WHAT GONE KEPT - exactly the recipients GONE removed: each of
-- GONE removed, none of KEPT (the others of the message, and those of the
-- messages before it on the connection)
function removed(conn, what, gone, kept)
    for _, r in ipairs(gone) do
        check(mt.eom_check(conn, MT_RCPTDELETE, r), what .. ": suppressed " .. r .. " removed")
    end
    for _, r in ipairs(kept) do
        check(not mt.eom_check(conn, MT_RCPTDELETE, r), what .. ": " .. r .. " not removed")
    end
end

-- one_signature CONN WHAT - the DKIM-Signature inserted, exactly one, at
-- the top; its value (or nil)
function one_signature(conn, what)
    local sigs = inserted(conn, "DKIM-Signature")
    if not check(#sigs == 1, what .. ": exactly one DKIM-Signature inserted, got " .. #sigs) then
        return nil
    end
    check(mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature", sigs[1], 0),
          what .. ": the DKIM-Signature inserted at the top (index 0)")
    check(not mt.eom_check(conn, MT_HDRADD, "DKIM-Signature"),
          what .. ": no DKIM-Signature appended at the bottom")
    return sigs[1]
end

-- save_message FILE FIELDS BODY SIG - the message as the MTA would now
-- hold it (the signature inserted at the top, then the fields as sent, the
-- body as sent), for the runner to verify with tests/integration/dkim_verify.py
function save_message(file, fields, text, sig)
    local f = assert(io.open(file, "wb"))
    if sig then
        f:write("DKIM-Signature: ", (sig:gsub("\r?\n", "\r\n")), "\r\n")
    end
    for _, h in ipairs(fields) do
        f:write(h[1], ": ", h[2], "\r\n")
    end
    f:write("\r\n", text)
    f:close()
end

-- lines N [WIDTH] - a body of N distinct CRLF lines (printable ASCII, some
-- white space that relaxed canonicalisation folds)
function lines(n, width)
    width = width or 70
    local t = {}
    for i = 1, n do
        local s = string.format("line %06d:  %s", i, string.rep(string.char(97 + i % 26), width))
        t[#t + 1] = s:sub(1, width) .. "\r\n"
    end
    return table.concat(t)
end

-- sized N - a body of exactly N bytes (N >= 2) of CRLF lines
function sized(n)
    local t, rem, i = {}, n, 0
    local function line(len) -- len bytes, CRLF included
        i = i + 1
        local s = string.format("%06d %s", i, string.rep(string.char(97 + i % 26), len))
        t[#t + 1] = s:sub(1, len - 2) .. "\r\n"
    end
    while rem > 144 do
        line(72)
        rem = rem - 72
    end
    if rem >= 4 then
        line(rem // 2)
        line(rem - rem // 2)
    else
        line(rem)
    end
    return table.concat(t)
end
