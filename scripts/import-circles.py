#!/usr/bin/env python3
"""Import circles between the modules of a crate, from the paths its source names.

Usage: import-circles.py CRATE_SRC [DEPTH]. Each file is a module (`a/b.rs` and `a/b/mod.rs`
are `a::b`); an arrow A → B is a `crate::`, `super::` or `self::` path from A that names B
(cut to DEPTH segments, 1 by default: the crate's top-level modules). A module's arrows to
its own parent or children are not counted: they are how Rust nests a module. Prints each
circle (modules that reach each other) and exits 1 if there is one; with -v also every
module with its arrows, leaves first.
"""
import os
import re
import sys

args = [a for a in sys.argv[1:] if not a.startswith('-')]
src = args[0]
depth = int(args[1]) if len(args) > 1 else 1
verbose = '-v' in sys.argv


def module_path(rel):
    parts = rel[:-3].split('/')
    if parts[-1] == 'mod':
        parts = parts[:-1]
    if parts in (['lib'], ['main']):
        return []
    return parts


def paths(text):
    """Every path after `crate::`, `super::` or `self::`, groups expanded."""
    out = []
    for m in re.finditer(r'\b(crate|super|self)((?:::\w+)*)::(\{)?', text):
        head = [m.group(1)] + [s for s in m.group(2).split('::') if s]
        if not m.group(3):
            nxt = re.match(r'\w+', text[m.end():])
            out.append(head + ([nxt.group(0)] if nxt else []))
            continue
        depth_, k, tok, first = 1, m.end(), '', True
        while k < len(text) and depth_ > 0:
            c = text[k]
            if c == '{':
                depth_ += 1
            elif c == '}':
                depth_ -= 1
            if depth_ == 1 and c == ',':
                first, tok = True, ''
            elif depth_ == 1 and first and (c.isalnum() or c == '_'):
                tok += c
            elif first and tok:
                out.append(head + [tok])
                first, tok = False, ''
            k += 1
        if first and tok:
            out.append(head + [tok])
    return out


def resolve(here, path):
    if path[0] == 'crate':
        return path[1:]
    base = list(here)
    rest = path
    while rest and rest[0] in ('super', 'self'):
        if rest[0] == 'super':
            base = base[:-1]
        rest = rest[1:]
    return base + rest


files = {}
for root, _, names in os.walk(src):
    for name in names:
        if name.endswith('.rs'):
            rel = os.path.relpath(os.path.join(root, name), src)
            files[tuple(module_path(rel))] = os.path.join(root, name)
known = set(files)

edges = {}
for mod, path in files.items():
    if 'tests' in mod:
        continue
    text = re.sub(r'//[^\n]*', '', open(path).read())
    text = re.split(r'#\[cfg\(test\)\]\s*mod tests\b', text)[0]
    a = mod[:depth]
    for p in paths(text):
        target = resolve(list(mod), p)
        # The longest known module the path names.
        while target and tuple(target) not in known:
            target = target[:-1]
        b = tuple(target[:depth])
        if not b or b == a or b == a[:len(b)] or a == b[:len(a)]:
            continue
        edges.setdefault(a, set()).add(b)

name = '::'.join
nodes = sorted(set(edges) | {b for v in edges.values() for b in v})
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            strong(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(comp)


for v in nodes:
    if v not in index:
        strong(v)
circles = [c for c in sccs if len(c) > 1]
for c in circles:
    print('circle:', ' ↔ '.join(sorted(name(m) for m in c)))
    for m in sorted(c):
        print('   ', name(m), '→', ', '.join(sorted(name(b) for b in edges.get(m, ()) if b in c)))
if verbose:
    for c in sccs:
        for m in c:
            print(name(m), '→', ', '.join(sorted(name(b) for b in edges.get(m, ()))))
sys.exit(1 if circles else 0)
