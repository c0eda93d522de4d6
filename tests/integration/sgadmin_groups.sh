#!/bin/sh
# sgadmin_groups - unsubscribe groups and their suppressions, and lookup's
# decisions through every entry form and bypass of the default group.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"

expect 0 --json groups create --name Newsletter --description 'Weekly news' --default
json 'j["id"]==1 and j["is_default"] is True and j["unsubscribes"]==0'
expect 0 groups create --name Offers
out_has 'created group 2 "Offers"'
expect 65 groups create --name newsletter
err_has 'already exists'
long=$(printf '%0101d' 0)
expect 65 groups create --name "$long"
err_has 'at most 100'
expect 64 groups create --description x
err_has -- '--name is required'
# making Offers the default takes it from Newsletter, and says so
expect 0 groups update 2 --default
err_has 'group 1 is no longer the default group'
expect 0 --json groups get 1
json 'j["is_default"] is False'

expect 0 group-suppressions add 2 one@example.com two@example.com
out_has 'suppressed one@example.com in group 2'
expect 0 group-suppressions add 2 one@example.com
out_has 'already suppressed'
expect 0 group-suppressions add 1 one@example.com
expect 0 --json group-suppressions list 2
json 'sorted(j)==["one@example.com","two@example.com"]'
expect 0 group-suppressions search 2 one@example.com three@example.com
out_has one@example.com
out_lacks three@example.com
expect 67 group-suppressions list 9
err_has 'no group 9'
expect 0 --json groups list
json '[(g["id"],g["unsubscribes"],g["is_default"]) for g in j]==[(1,1,False),(2,2,True)]'

# lookup: the default group applies when no group is named
expect 0 --json lookup one@example.com
json 'j["decision"]=="drop" and j["reason"]=="group_unsubscribe" and j["group"]==2'
expect 0 --json lookup two@example.com --group 1
json 'j["decision"]=="deliver" and j["group"]==1'
# every form of entry, and the allow list winning
expect 0 bounces add '@bounced.example'
expect 0 --json lookup Anyone@Bounced.Example
json 'j["decision"]=="drop" and j["reason"]=="bounce" and j["matches"][0]["match"]=="domain"'
md5=$(printf '%s' 'hashed@example.com' | md5sum | cut -c1-32)
sha=$(printf '%s' 'hashed@example.com' | sha256sum | cut -c1-64)
expect 0 spam-reports add "$md5"
expect 0 unsubscribes add "$sha"
expect 0 --json lookup Hashed@Example.com
json 'sorted((m["list"],m["match"]) for m in j["matches"])==[("spam_reports","md5"),("unsubscribes","sha256")] and j["reason"]=="spam_report"'
expect 0 allow-list add hashed@example.com
expect 0 --json lookup hashed@example.com
json 'j["decision"]=="deliver" and j["allowed"] is True'
expect 0 lookup nobody@example.org
out_has 'on no list'
out_has 'decision: deliver'
expect 65 lookup 'not-an-address'

# deleting a group deletes its suppressions
expect 0 groups delete 2
out_has 'deleted group 2 and its 2 suppressions'
expect 67 groups get 2
expect 0 --json lookup two@example.com --group 1
json 'j["matches"]==[]'
expect 0 --json groups list
json '[g["id"] for g in j]==[1]'
done_ok
