-- tenant - whose message it is: the tenant whose logins hold the SASL login
-- ({auth_authen}), else whose domains hold the envelope sender's domain, else
-- the From domain's; "default" otherwise.  The runner's configuration has
-- tenant acme (login acme-app, domain acme.example) and tenant beta (login
-- beta-app, domain beta.example), and t@example.org bounced in tenant acme only: t@ is removed
-- from exactly the messages that are acme's.
--   -D sock=SOCKET -D mtdir=DIR
SCRIPT = "tenant"
dofile(mtdir .. "/common.lua")

local conn = open()

-- send LOGIN SENDER FROM SUBJECT - one message to t@ and ok@, with the SASL
-- login (or none); whether the milter removed t@.  A message of another
-- tenant needs nothing (t@ is not suppressed there, the domains have no
-- key) and is accepted at the end of its header; an acme one goes on to
-- its end, where t@ is removed.
local function send(login, sender, from, subject)
    queue_ids = (queue_ids or 0) + 1
    -- one macro packet per stage: the queue id and the login together
    if login then
        mt.macro(conn, SMFIC_MAIL, "i", SCRIPT .. queue_ids, "{auth_authen}", login)
    else
        mt.macro(conn, SMFIC_MAIL, "i", SCRIPT .. queue_ids)
    end
    step("MAIL", mt.mailfrom(conn, sender))
    reply_is(conn, SMFIR_CONTINUE, "reply to MAIL " .. sender)
    for _, r in ipairs({ "<t@example.org>", "<ok@example.org>" }) do
        step("RCPT", mt.rcptto(conn, r))
        reply_is(conn, SMFIR_CONTINUE, "reply to RCPT " .. r)
    end
    headers(conn, { { "From", from }, { "Subject", subject } })
    step("end of header", mt.eoh(conn))
    local r = mt.getreply(conn)
    if r == SMFIR_ACCEPT then
        step("abort", mt.abort(conn)) -- as Postfix ends an accepted transaction
        return false
    end
    check(r == SMFIR_CONTINUE, subject .. ": reply to the end of the header: expected " ..
                               "SMFIR_ACCEPT or SMFIR_CONTINUE, got " .. rname(r))
    body(conn, "body of " .. subject .. "\r\n")
    eom(conn)
    accepted(conn, subject)
    check(not mt.eom_check(conn, MT_RCPTDELETE, "<ok@example.org>"), "ok@ is never removed")
    return mt.eom_check(conn, MT_RCPTDELETE, "<t@example.org>")
end

scene("1: the SASL login acme-app")
check(send("acme-app", "<x@other.example>", "x@other.example", "by login"),
      "t@ removed: the login makes it acme's")
scene("2: a login no tenant has, domains of none")
check(not send("nobody", "<x@other.example>", "x@other.example", "unknown login"),
      "t@ kept: tenant default")
scene("3: no login, the envelope sender's domain")
check(send(nil, "<news@ACME.example>", "x@other.example", "by sender"),
      "t@ removed: acme.example (in any case) makes it acme's")
scene("4: no login, the From domain")
check(send(nil, "<bounces@other.example>", "News <news@acme.example>", "by From"),
      "t@ removed: the From domain makes it acme's")
scene("5: the login comes first")
check(not send("beta-app", "<news@acme.example>", "news@acme.example", "login first"),
      "t@ kept: beta's login outranks acme's domains")
scene("6: the sender's domain comes before the From domain")
check(not send(nil, "<news@beta.example>", "news@acme.example", "sender first"),
      "t@ kept: beta.example, the sender's, outranks acme.example, the From's")
mt.disconnect(conn)
finish()
