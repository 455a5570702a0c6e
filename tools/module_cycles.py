#!/usr/bin/env python3
"""Import cycles among the library's modules (issue 15: "the module import graph has no cycles").

Reads every `use crate::...`, `use super::...` and `crate::a::b` path in src/, resolves it to
the module file it names, and reports the strongly connected components with more than one
module, at two levels: files (`nn::quantized::gemm`) and top-level modules (`nn`, `workflow`).
A module's own submodules count as part of it at the top level. Exit status 1 if any cycle.
Usage: python3 tools/module_cycles.py [src]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"


def module_of(path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


files = {}
for dirpath, _, names in os.walk(root):
    for name in names:
        if name.endswith(".rs"):
            path = os.path.join(dirpath, name)
            files[module_of(path)] = open(path).read()
modules = set(files)


def resolve(current, segments):
    """The longest known module prefix of an absolute path."""
    best = None
    for i in range(1, len(segments) + 1):
        if tuple(segments[:i]) in modules:
            best = tuple(segments[:i])
    return best


def strip_tests(text):
    # Unit-test modules may use anything; they are not part of the import graph.
    return re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]


def paths_in(text):
    text = re.sub(r"//[^\n]*", "", strip_tests(text))
    out = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        out.extend(expand(m.group(1).replace("\n", " ").replace(" ", "")))
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
        out.append(m.group(1))
    return out


def expand(tree):
    """`a::{b, c::{d}}` -> [a::b, a::c::d]."""
    if "{" not in tree:
        return [tree]
    i = tree.index("{")
    prefix, inner = tree[:i], tree[i + 1 : tree.rindex("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [q for p in parts if p for q in expand(prefix + p)]


def absolute(current, path, is_mod_file):
    segs = path.split("::")
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] == "super":
        base = list(current) if is_mod_file else list(current[:-1])
        while segs and segs[0] == "super":
            base = base[:-1] if segs is not None and base is not None else base
            segs = segs[1:]
        # `super` from a file module is its parent; from a mod.rs it is the parent's parent.
        return base + segs
    return None


edges = {m: set() for m in modules}
for mod, text in files.items():
    is_mod_file = False  # module_of already maps mod.rs to its directory
    for p in paths_in(text):
        segs = p.split("::")
        if segs[0] == "super":
            base = list(mod[:-1])
            segs = segs[1:]
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            target = resolve(mod, base + segs)
        elif segs[0] == "crate":
            target = resolve(mod, segs[1:])
        else:
            continue
        if target is not None and target != mod and not (target == mod[: len(target)]):
            edges[mod].add(target)


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "crate"


found = 0
file_cycles = sccs(edges)
for comp in file_cycles:
    found += 1
    print("file cycle:", ", ".join(name(m) for m in comp))
top = {}
for a, targets in edges.items():
    for b in targets:
        if a and b and a[0] != b[0]:
            top.setdefault(a[0], set()).add(b[0])
for comp in sccs(top):
    found += 1
    print("top-level cycle:", ", ".join(comp))
    for a in comp:
        for b in sorted(top.get(a, ())):
            if b in comp:
                users = sorted(name(m) for m, t in edges.items() if m and m[0] == a and any(x[0] == b for x in t))
                print(f"  {a} -> {b}: {', '.join(users[:6])}{' ...' if len(users) > 6 else ''}")
print(f"{len(modules)} modules, {found} cycles")
sys.exit(1 if found else 0)
