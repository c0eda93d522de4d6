#!/bin/sh
# sgadmin_lists - bounces, spam reports, unsubscribes and the allow list:
# add, get, list (order, offset, limit, time range, email), delete, and the
# JSON shapes of the hosted APIs.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"

expect 0 bounces add 'a@example.com' --type hard --reason '550 5.1.1 no such user' --status 5.1.1 --created 1700000000
out_has "added a@example.com"
expect 0 --json bounces get 'A@EXAMPLE.com'
json 'j["email"]=="a@example.com" and j["created"]==1700000000 and j["status"]=="5.1.1" and j["bounce_type"]=="hard" and j["reason"].startswith("550")'
# a second bounce replaces the first, and says so
expect 0 bounces add 'a@example.com' --type soft --reason 'mailbox full' --status 5.2.2 --created 1700000500
out_has "replaced its bounce"
expect 0 --json bounces get a@example.com
json 'j["bounce_type"]=="soft" and j["created"]==1700000500'

# a second spam report or unsubscribe keeps the first created time
expect 0 spam-reports add s@example.com --source 192.0.2.7 --created 1700000000
expect 0 spam-reports add S@example.com --source fbl.example --created 1800000000
out_has "kept the first created"
expect 0 --json spam-reports get s@example.com
json 'j["created"]==1700000000 and j["ip"]=="192.0.2.7" and j["source"]=="192.0.2.7"'
expect 0 unsubscribes add u@example.com
expect 0 unsubscribes add u@example.com
out_has "kept the first created"

# entries that are not plain addresses
expect 0 unsubscribes add '@Blocked.Example' 0123456789ABCDEF0123456789abcdef
expect 0 --json unsubscribes list
json 'sorted(e["email"] for e in j)==sorted(["u@example.com","@blocked.example","0123456789abcdef0123456789abcdef"])'
# IDN domains are stored in punycode
expect 0 unsubscribes add 'Üser@Bücher.example'
expect 0 unsubscribes get 'Üser@xn--bcher-kva.example'
out_has "xn--bcher-kva.example"

# not an address: refused with a reason, nothing stored, exit 65
expect 65 bounces add 'not an address'
err_has "not an address"
expect 67 bounces get nobody@example.com
err_has "not on the bounces list"

# listing: newest first, offset, limit, inclusive time range, email
for i in 1 2 3 4 5 6 7 8 9; do
    expect 0 allow-list add "p$i@partner.example" --created "170000000$i"
done
expect 0 --json allow-list list --limit 3 --offset 2
json '[e["email"] for e in j]==["p7@partner.example","p6@partner.example","p5@partner.example"]'
expect 0 --json allow-list list --start-time 1700000003 --end-time 1700000005
json '[e["created"] for e in j]==[1700000005,1700000004,1700000003]'
expect 0 --json allow-list list --end-time 2023-11-14T22:13:22Z
json 'len(j)==2'
expect 0 allow-list list --email P4@partner.example
out_has "p4@partner.example"
out_has "1 matching"
expect 0 allow-list list
out_has "9 shown, 9 matching"
expect 64 allow-list list --limit 501
err_has "--limit must be a whole number from 1 to 500"
expect 64 allow-list list --start-time yesterday
err_has "--start-time must be"

# delete one, some, all
expect 0 allow-list delete p1@partner.example p2@partner.example
out_has "deleted p1@partner.example"
expect 67 allow-list delete p1@partner.example
err_has "not on the allow list"
expect 64 allow-list delete --all
err_has "without --yes"
expect 0 --json allow-list list
json 'len(j)==7'
expect 0 allow-list delete --all --yes
out_has "deleted 7 entries"
expect 0 --json allow-list list
json 'j==[]'

# tenants are separate
expect 0 --tenant acme bounces add t@example.com
expect 0 --json --tenant acme bounces list
json 'len(j)==1'
expect 0 --json bounces list
json '[e["email"] for e in j]==["a@example.com"]'
expect 64 --tenant 'bad tenant' bounces list

# the event log through the command line (the milter and relay write it)
mkdir -p "$STORE/events"
cat >"$STORE/events/2023-11-14.jsonl" <<'EV'
{"email":"a@example.com","event":"processed","sg_event_id":"e1","tenant":"default","timestamp":1700000000}
{"email":"b@example.com","event":"dropped","reason":"bounce","sg_event_id":"e2","tenant":"default","timestamp":1700000100}
{"email":"a@example.com","event":"delivered","sg_event_id":"e3","tenant":"acme","timestamp":1700000200}
{"email":"a@example.com","event":"delivered","sg_event_id":"e4","tenant":"default","timestamp":1700000300}
EV
expect 0 --json events list
json '[e["sg_event_id"] for e in j]==["e4","e2","e1"]'
expect 0 --json events list --email A@Example.com --type delivered
json '[e["sg_event_id"] for e in j]==["e4"]'
expect 0 --json events list --since 1700000050 --until 1700000100
json '[e["sg_event_id"] for e in j]==["e2"]'
expect 0 --json --tenant acme events list
json '[e["sg_event_id"] for e in j]==["e3"]'
expect 0 events list --limit 1
out_has "delivered"
out_lacks "dropped"
done_ok
