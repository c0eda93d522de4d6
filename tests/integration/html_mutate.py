#!/usr/bin/python3
# html_mutate - N mutated copies of the corpus files, deterministic for a
# seed: each gets 1 to 8 edits (a piece of markup inserted, a run of bytes
# removed, a random byte inserted) at random places.  The markup pieces are
# those a scanner can get wrong (quotes, comments, raw text elements, select,
# entities, tags cut short); SVG and MathML, framesets and the corpus file
# built around them are left out: there lib/html follows only well-formed
# markup (see lib/html.h).
#   html_mutate.py SEED N OUTDIR FILE...
import os
import random
import sys

PIECES = [b'<', b'>', b'"', b"'", b'<!--', b'-->', b'--!>', b'<!-->', b'<a href=',
          b'<A HREF="http://x/?a&amp;b">', b'<a href=x clicktracking=off>', b'</a>',
          b'<script>', b'</script>', b'<!--<script>', b'<style>', b'</style>',
          b'<select>', b'</select>', b'<option>', b'<input>', b'<keygen>',
          b'<textarea>', b'</textarea>', b'<title>', b'</title>', b'<xmp>', b'<iframe>',
          b'<noembed>', b'<noframes>', b'<noscript>', b'<plaintext>', b'<template>',
          b'</template>', b'&', b'&amp', b'&#', b'&#x41', b'&copy', b'&notin;', b'=',
          b'/', b' ', b'\n', b'\r', b'\x00', b'<!', b'<?', b'</', b'</ a>', b'<!DOCTYPE html>',
          b'<p>', b'</p>', b'<table>', b'<td>', b'<body>', b'</body>', b'<html>',
          b'</html>', b'<head>', b'</head>', b'<![CDATA[', b']]>', b'<b>', b'</b>']

seed, n, outdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = [f for f in sys.argv[4:] if 'svg' not in os.path.basename(f)]
rnd = random.Random(seed)
for k in range(n):
    name = rnd.choice(files)
    data = bytearray(open(name, 'rb').read())
    for _ in range(rnd.randint(1, 8)):
        pos = rnd.randint(0, len(data))
        r = rnd.random()
        if r < 0.6:
            data[pos:pos] = rnd.choice(PIECES)
        elif r < 0.8:
            del data[pos:pos + rnd.randint(1, 20)]
        else:
            data[pos:pos] = bytes([rnd.randint(0, 255)])
    with open(os.path.join(outdir, 'm%04d.html' % k), 'wb') as f:
        f.write(data)
