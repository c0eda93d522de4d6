#!/bin/sh
# html_links - lib/html finds the links gumbo (Google's HTML5 parser,
# Debian's libgumbo) finds:
#   corpus    every tests/fixtures/html/NAME.html gives exactly NAME.links,
#             which html_links_gumbo wrote: the same <a href>s, at the same
#             bytes, with the same decoded values and clicktracking values
#   oracle    NAME.links is still what gumbo says (html_links_gumbo run now)
#   mutated   MUTATIONS (400) mutated copies of the corpus (html_mutate.py,
#             a fixed seed): lib/html and gumbo agree on each
. "$(dirname "$0")/lib.sh"
HL="$SG_TOP_BUILDDIR/tests/integration/html_links"
GUMBO="$SG_TOP_BUILDDIR/tests/integration/html_links_gumbo"
FIX="$SG_TOP_SRCDIR/tests/fixtures/html"
MUTATIONS=${MUTATIONS:-400}
[ -x "$HL" ] || fail "no $HL (make check builds it)"

n=0
for f in "$FIX"/*.html; do
    name=$(basename "$f" .html)
    [ -f "$FIX/$name.links" ] || fail "no $name.links beside $name.html"
    "$HL" "$f" >"$WORK/$name.mine"
    CHECKS=$((CHECKS + 1))
    cmp -s "$FIX/$name.links" "$WORK/$name.mine" ||
        fail "$name: lib/html and gumbo differ:
$(diff "$FIX/$name.links" "$WORK/$name.mine" | head -20)"
    n=$((n + $(wc -l <"$WORK/$name.mine")))
done
echo "corpus: $(ls "$FIX"/*.html | wc -l) files, $n links, all as gumbo finds them"

if [ ! -x "$GUMBO" ]; then
    [ "${CI:-}" = true ] && fail "html_links_gumbo was not built (libgumbo-dev missing?)"
    echo "html_links: oracle and mutations skipped (no libgumbo-dev)"
    done_ok
    exit 0
fi
for f in "$FIX"/*.html; do
    name=$(basename "$f" .html)
    "$GUMBO" "$f" >"$WORK/$name.gumbo" 2>"$WORK/$name.gerr"
    CHECKS=$((CHECKS + 1))
    cmp -s "$FIX/$name.links" "$WORK/$name.gumbo" ||
        fail "$name.links is not what gumbo says now: $(diff "$FIX/$name.links" "$WORK/$name.gumbo" | head -10)"
done

mkdir "$WORK/mut"
/usr/bin/python3 "$SG_TOP_SRCDIR/tests/integration/html_mutate.py" 20261123 "$MUTATIONS" \
    "$WORK/mut" "$FIX"/*.html
bad=0
for f in "$WORK"/mut/*.html; do
    "$GUMBO" "$f" >"$f.gumbo" 2>/dev/null
    "$HL" "$f" >"$f.mine"
    CHECKS=$((CHECKS + 1))
    if ! cmp -s "$f.gumbo" "$f.mine"; then
        bad=$((bad + 1))
        [ "$bad" -le 3 ] && echo "---- $(basename "$f"): $(diff "$f.gumbo" "$f.mine" | head -6)" >&2
    fi
done
[ "$bad" -eq 0 ] || fail "$bad of $MUTATIONS mutated documents differ (kept: set KEEP)"
echo "mutated: $MUTATIONS documents, lib/html and gumbo agree on each"
done_ok
