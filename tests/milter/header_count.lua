-- header_count - milter.max_headers: a message of exactly LIMIT header
-- fields passes (and is signed); one of LIMIT + 1 is refused at the header
-- callback of its last field and told at the end of the header (552 5.3.4
-- "too many header fields (limit N)";
-- miltertest sees the reply code only, the runner checks the text), and the
-- count starts again with the next message on the connection.
--   -D sock=SOCKET -D mtdir=DIR -D limit=N
SCRIPT = "header_count"
dofile(mtdir .. "/common.lua")
limit = tonumber(limit)
need(limit ~= nil and limit >= 3, "-D limit=N (3 or more) is needed")

-- fields N - From, Subject and filler up to N header fields
local function fields(n, what)
    local t = { { "From", "Shop <news@shop.example>" }, { "Subject", what } }
    for i = 3, n do
        t[#t + 1] = { "X-Filler-" .. i, "field " .. i .. " of " .. n }
    end
    return t
end

-- full CONN WHAT - a message of exactly LIMIT fields, through to its end
local function full(conn, what)
    envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
    headers(conn, fields(limit, what))
    eoh(conn)
    check(body(conn, "body of " .. what .. "\r\n") == SMFIR_CONTINUE, what .. ": the body is wanted")
    eom(conn)
    accepted(conn, what .. ": end of message")
    one_signature(conn, what)
end

local conn = open()

scene("1: " .. limit .. " header fields")
full(conn, "at the limit")

scene("2: " .. limit + 1 .. " header fields")
envelope(conn, "<news@shop.example>", { "<ok@example.org>" })
local all = fields(limit + 1, "over the limit")
local last = table.remove(all)
headers(conn, all)
step("header field " .. limit + 1, mt.header(conn, last[1], last[2]))
-- no reply is awaited at a header field: the refusal comes at the next
-- step with one, the end of the header
reply_is(conn, SMFIR_CONTINUE, "header field " .. limit + 1 .. " awaits no reply")
step("end of header", mt.eoh(conn))
reply_is(conn, SMFIR_REPLYCODE, "the message with " .. limit + 1 ..
                                " fields refused with a reply code at the end of its header")
step("abort", mt.abort(conn)) -- what the MTA does after a refusal

scene("3: " .. limit .. " header fields again, same connection")
full(conn, "at the limit again")

mt.disconnect(conn)
finish()
