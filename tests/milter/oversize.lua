-- oversize - the milter's own limits on what it holds, with small limits
-- from the runner's configuration:
--   milter.max_header_size  HSIZE: a header field (name, ": ", value) of
--                           HSIZE bytes passes, of HSIZE + 1 is refused at
--                           its header callback (552 5.3.4 ... the runner
--                           checks the text);
--   milter.body_memory      BMEM: a body the milter needs is held in memory
--                           up to BMEM bytes, beyond in a private (0600)
--                           unlinked temporary file in TMPDIR, closed at
--                           the end of the message, at an abort and when
--                           the connection drops;
--   milter.max_body_size    BSIZE: a needed body of BSIZE bytes is signed,
--                           one over it is refused (552 5.3.4); a body the
--                           milter does not need is not limited.
-- The temporary file is looked for among the milter's open files
-- (/proc/PID/fd), while the body is being sent.
--   -D sock=SOCKET -D mtdir=DIR -D out=DIR -D pid=PID -D tmpdir=DIR
--   -D hsize=N -D bmem=N -D bsize=N [-D part=spill]
-- Writes OUT/spill.eml and OUT/exact.eml (the signed messages as the MTA
-- would hold them) for the runner to verify their signatures.
SCRIPT = "oversize"
dofile(mtdir .. "/common.lua")
hsize, bmem, bsize = tonumber(hsize), tonumber(bmem), tonumber(bsize)
need(hsize and bmem and bsize and pid and tmpdir and out,
     "-D out, pid, tmpdir, hsize, bmem and bsize are needed")
part = part or "all"

local SHOP = "Shop <news@shop.example>"

-- held - "MODE PATH" of each file under TMPDIR the milter has open
local function held()
    local p = io.popen(string.format(
        'for f in /proc/%s/fd/*; do t=$(readlink "$f") || continue; ' ..
        'case "$t" in "%s"/*) echo "$(stat -L -c %%a "$f" 2>/dev/null) $t";; esac; done', pid, tmpdir))
    local t = {}
    for l in p:lines() do t[#t + 1] = l end
    p:close()
    return t
end

-- visible - the names in TMPDIR
local function visible()
    local p = io.popen(string.format('ls -A "%s"', tmpdir))
    local t = {}
    for l in p:lines() do t[#t + 1] = l end
    p:close()
    return t
end

-- released WHAT - no temporary file left open (waiting up to 5 s: an abort
-- and a dropped connection are handled after miltertest goes on)
local function released(what)
    local h
    for _ = 1, 50 do
        h = held()
        if #h == 0 then break end
        mt.sleep(0.1)
    end
    check(#h == 0, what .. ": the temporary file is closed; still open: " .. table.concat(h, ", "))
    local v = visible()
    check(#v == 0, what .. ": nothing left in " .. tmpdir .. ": " .. table.concat(v, " "))
end

-- spilled WHAT - exactly one private unlinked temporary file held open
local function spilled(what)
    local h = held()
    check(#h == 1, what .. ": one temporary file under " .. tmpdir .. " open, got " .. #h ..
                   (#h > 0 and (": " .. table.concat(h, ", ")) or ""))
    if #h == 1 then
        check(h[1]:match("^600 ") ~= nil, what .. ": the temporary file is private (0600): " .. h[1])
        check(h[1]:match(" %(deleted%)$") ~= nil, what .. ": the temporary file is unlinked: " .. h[1])
    end
    local v = visible()
    check(#v == 0, what .. ": nothing visible in " .. tmpdir .. ": " .. table.concat(v, " "))
end

-- signed CONN WHAT SIZE FILE - a message From shop.example with a body of
-- SIZE bytes (in chunks of 3000), through to its end: accepted, signed;
-- the temporary file checked before the end (spill: when SIZE > BMEM)
local function signed(conn, what, size, file)
    local fields = { { "From", SHOP }, { "To", "ok@example.org" }, { "Subject", what },
                     { "Message-ID", "<" .. size .. "@shop.example>" } }
    local text = sized(size)
    envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
    headers(conn, fields)
    eoh(conn)
    local r, sent = body(conn, text, 3000)
    check(r == SMFIR_CONTINUE, what .. ": all " .. size .. " bytes of body continued, got " .. rname(r) ..
                               " after " .. sent)
    if size > bmem then
        spilled(what .. " (" .. size .. " > body_memory " .. bmem .. ")")
    else
        local h = held()
        check(#h == 0, what .. ": held in memory (" .. size .. " <= body_memory " .. bmem ..
                       "), yet a temporary file is open: " .. table.concat(h, ", "))
    end
    eom(conn)
    accepted(conn, what .. ": end of message")
    local sig = one_signature(conn, what)
    if file then save_message(out .. "/" .. file, fields, text, sig) end
    released(what .. ", after its end")
end

-- 1: a body spilled to the temporary file is signed as it was sent (first,
-- and alone with -D part=spill: the run with milter.tmp_dir empty)
scene("spill: 50000 bytes of body, signed")
local conn = open()
signed(conn, "spilled body", 50000, "spill.eml")
mt.disconnect(conn)
if part == "spill" then
    finish()
    return
end

-- 2: one header field at the limit, one over it
scene("header field of max_header_size bytes")
conn = open()
local name = "X-Big"
local fields = { { "From", SHOP }, { "Subject", "a big field" },
                 { name, string.rep("v", hsize - #name - 2) } }
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, fields)
eoh(conn)
body(conn, "body\r\n")
eom(conn)
accepted(conn, "a field of exactly " .. hsize .. " bytes")
one_signature(conn, "a field of exactly " .. hsize .. " bytes")

scene("header field of max_header_size + 1 bytes")
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "a field too big" } })
step("the big field", mt.header(conn, name, string.rep("v", hsize - #name - 1)))
-- refused at the next step with a reply: the end of the header
reply_is(conn, SMFIR_CONTINUE, "a header field awaits no reply")
step("end of header", mt.eoh(conn))
reply_is(conn, SMFIR_REPLYCODE, "a field of " .. hsize + 1 .. " bytes (value " .. hsize - #name - 1 ..
                                " bytes: its name and ': ' count) refused with a reply code at the " ..
                                "end of the header")
step("abort", mt.abort(conn))

scene("a message after the refused field, same connection")
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "after the big one" }, { "X-Small", "small" } })
eoh(conn)
body(conn, "body\r\n")
eom(conn)
accepted(conn, "the message after the refused field")
mt.disconnect(conn)

-- 3: a body of exactly body_memory bytes stays in memory; one of exactly
-- max_body_size is signed
scene("body of body_memory bytes")
conn = open()
signed(conn, "body in memory", bmem, nil)
scene("body of max_body_size bytes")
signed(conn, "body at the limit", bsize, "exact.eml")
mt.disconnect(conn)

-- 4: a needed body over max_body_size: refused, at the body chunk that
-- crosses the limit (never before) or at the end of the message
scene("needed body over max_body_size")
conn = open()
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "too big a body" } })
eoh(conn)
local big = sized(150000)
local r, sent = body(conn, big, 8192)
if r == SMFIR_CONTINUE then
    eom(conn)
    reply_is(conn, SMFIR_REPLYCODE, "a body of 150000 bytes refused at the end of the message")
    check(mt.eom_check(conn, MT_SMTPREPLY, "552", "5.3.4",
                       "message body too large for the milter (limit " .. bsize .. " bytes)"),
          "552 5.3.4 message body too large for the milter (limit " .. bsize .. " bytes)")
    unchanged(conn, "body too big", { "<ok@example.org>" })
else
    check(r == SMFIR_REPLYCODE, "a body over the limit refused with a reply code, got " .. rname(r))
    check(sent > bsize, "refused only once over the limit: after " .. sent .. " bytes, limit " .. bsize)
    step("abort", mt.abort(conn))
end
released("the refused body")

-- the connection goes on
scene("a message after the refused body, same connection")
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "after the big body" } })
eoh(conn)
body(conn, "a small body\r\n")
eom(conn)
accepted(conn, "the message after the refused body")
one_signature(conn, "the message after the refused body")
mt.disconnect(conn)

-- 5: a body nobody needs (From a domain without a key, no X-SMTPAPI) is not
-- limited.  Its message needs a change (gone@ is removed at the end), so
-- it is not accepted at the end of its header: an MTA that cannot skip
-- sends the body all, and the message passes otherwise unchanged; one that
-- can is told to skip it at once
scene("unneeded body over max_body_size, SMFIP_SKIP not offered")
conn = open(0x001FFFFF - SMFIP_SKIP, nil)
envelope(conn, "<app@other.example>", { "<gone@example.org>", "<ok@example.org>" })
headers(conn, { { "From", "App <app@other.example>" }, { "Subject", "big but plain" } })
eoh(conn)
r, sent = body(conn, big, 8192)
check(r == SMFIR_CONTINUE, "all 150000 bytes continued, got " .. rname(r) .. " after " .. sent)
check(#held() == 0, "an unneeded body is not kept")
eom(conn)
accepted(conn, "an unneeded body of 150000 bytes")
unchanged(conn, "an unneeded body of 150000 bytes", { "<ok@example.org>" })
removed(conn, "an unneeded body of 150000 bytes", { "<gone@example.org>" }, {})
mt.disconnect(conn)

scene("unneeded body over max_body_size, SMFIP_SKIP offered")
conn = open()
envelope(conn, "<app@other.example>", { "<gone@example.org>", "<ok@example.org>" })
headers(conn, { { "From", "App <app@other.example>" }, { "Subject", "big but plain" } })
eoh(conn)
r, sent = body(conn, big, 8192)
check(r == SMFIR_SKIP and sent == 8192, "skipped at the first chunk, got " .. rname(r) .. " after " .. sent)
eom(conn)
accepted(conn, "an unneeded body, skipped")
unchanged(conn, "an unneeded body, skipped", { "<ok@example.org>" })
removed(conn, "an unneeded body, skipped", { "<gone@example.org>" }, {})

scene("a big message needing nothing")
envelope(conn, "<app@other.example>", { "<ok@example.org>" })
headers(conn, { { "From", "App <app@other.example>" }, { "Subject", "big and plain" } })
settled(conn, "a message needing nothing: its body never sent")

-- 6: a spilled body aborted: the file is closed; the next message is fine
scene("abort with the body in the temporary file")
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "aborted big body" } })
eoh(conn)
body(conn, sized(20000), 3000)
spilled("an aborted body, before the abort")
step("abort", mt.abort(conn))
released("an aborted body")
signed(conn, "after the abort", 6000, nil)
mt.disconnect(conn)

-- 7: the connection dropped with the body in the temporary file
scene("connection dropped with the body in the temporary file")
conn = open()
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
headers(conn, { { "From", SHOP }, { "Subject", "dropped big body" } })
eoh(conn)
body(conn, sized(20000), 3000)
spilled("a dropped connection's body, before")
mt.disconnect(conn, false)
released("a dropped connection's body")

finish()
