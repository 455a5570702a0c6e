//! The library's modules import each other without cycles, at the level of files and of
//! top-level modules (`quant` < `ops` < `observer` < `fake_quantize` < ... < `workflow` <
//! `train`), so that each layer can be read, tested and changed without the ones above it.
//! A lighter twin of tools/module_cycles.py (which also names the edges of a cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            modules(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may use anything; they are not part of the graph.
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap().to_string();
            out.insert(module, text);
        }
    }
}

/// `a::{b, c::{d, e}}` as `[a::b, a::c::d, a::c::e]`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..tree.rfind('}').unwrap()]);
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(ch);
        }
    }
    parts.push(current);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// Every `crate::` / `super::` path a file names, in `use` items or inline.
fn paths(text: &str) -> Vec<String> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    for item in code.split("use ").skip(1) {
        let tree: String = item.split(';').next().unwrap().chars().filter(|c| !c.is_whitespace()).collect();
        if tree.starts_with("crate::") || tree.starts_with("super::") {
            out.extend(expand(&tree));
        }
    }
    for start in ["crate::", "super::"] {
        for (i, _) in code.match_indices(start) {
            let rest = &code[i..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            out.push(rest[..end].trim_end_matches(':').to_string());
        }
    }
    out
}

fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Tarjan's strongly connected components.
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State, v: &Module) {
        let i = s.index.len();
        s.index.insert(v.clone(), i);
        s.low.insert(v.clone(), i);
        s.stack.push(v.clone());
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn the_module_import_graph_has_no_cycles() {
    let mut files = BTreeMap::new();
    modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut files);
    let known: BTreeSet<Module> = files.keys().cloned().collect();
    let resolve = |segments: Vec<String>| (1..=segments.len()).rev().map(|n| segments[..n].to_vec()).find(|m| known.contains(m));
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &files {
        for path in paths(text) {
            let mut segments: Vec<String> = path.split("::").map(str::to_string).collect();
            let absolute = if segments[0] == "crate" {
                segments.split_off(1)
            } else {
                let mut base = module[..module.len().saturating_sub(1)].to_vec();
                let mut rest = segments.split_off(1);
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest.remove(0);
                }
                base.extend(rest);
                base
            };
            if let Some(target) = resolve(absolute)
                && &target != module
                && !module.starts_with(&target)
            {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(graph.len() > 50, "the graph was read: {} modules with imports", graph.len());
    let file_cycles = cycles(&graph);
    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (a, targets) in &graph {
        for b in targets {
            if !a.is_empty() && !b.is_empty() && a[0] != b[0] {
                top.entry(vec![a[0].clone()]).or_default().insert(vec![b[0].clone()]);
            }
        }
    }
    let top_cycles = cycles(&top);
    let show =
        |c: &Vec<Vec<Module>>| c.iter().map(|m| m.iter().map(|p| p.join("::")).collect::<Vec<_>>().join(" <-> ")).collect::<Vec<_>>();
    assert!(
        file_cycles.is_empty() && top_cycles.is_empty(),
        "file cycles {:?}, top-level cycles {:?}",
        show(&file_cycles),
        show(&top_cycles)
    );
}
