//! The shape of the source tree, read from the files (no build, no dependency):
//!
//! - no import cycle among the modules of `actors/src`;
//! - no `.rs` file under `actors/` or `node/` over [`MAX_FILE_LINES`] lines;
//! - no function over [`MAX_FN_LINES`] lines in `actors/src` and `node/src`, tests excepted.
//!
//! Each check prints every violation it finds, then fails.
//!
//! The import graph: one node per module, where a module is one file (`mfa/totp.rs` is
//! `mfa::totp`, a folder's `mod.rs` is the folder's module, `lib.rs` is the crate root and is
//! left out). An edge comes from every `crate::` path: in a `use` declaration (groups
//! expanded, over several lines too) or inline in the code (comments and string contents are
//! blanked first). It points to the module the item lives in: the longest existing module
//! prefix of the path, followed through that module's re-exports, so `crate::mfa::forget` is an
//! edge to `mfa::data` when `mfa/mod.rs` says `pub use data::forget`, and `crate::mfa` alone an
//! edge to `mfa`. `self::` and `super::` paths make no edge (a folder's files may use the
//! folder's module and the other way round). A cycle is reported per strongly connected
//! component: its modules, and for every edge inside it the shortest cycle through that edge,
//! with the line that makes each edge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest `.rs` file allowed under `actors/` and `node/`.
const MAX_FILE_LINES: usize = 600;
/// Longest function allowed outside tests in `actors/src` and `node/src`, from its `fn` line to
/// its closing brace.
const MAX_FN_LINES: usize = 80;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, sorted, `target` folders left out.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    todo.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    let root = workspace().canonicalize().unwrap();
    let p = p.canonicalize().unwrap();
    p.strip_prefix(&root).unwrap_or(&p).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Lexing: comments and the contents of string and char literals become spaces (newlines kept),
// so what is left is code, with the same line numbers and byte offsets.

/// `src` with comments (nested block comments too) and the contents of string, raw string and
/// char literals replaced by spaces; lifetimes and labels are left alone.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(c.len());
    let mut i = 0;
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&c, i) {
            // r"..." or r#"..."#: the prefix stays, the contents go.
            out.extend(std::iter::repeat_n(' ', hashes + 2));
            i += hashes + 2;
            while i < c.len() && !(c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#'))) {
                out.push(blank(c[i]));
                i += 1;
            }
            out.extend(std::iter::repeat_n(' ', hashes + 1));
            i += hashes + 1;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                let n = if c[i] == '\\' { 2 } else { 1 };
                for k in 0..n {
                    if let Some(&ch) = c.get(i + k) {
                        out.push(blank(ch));
                    }
                }
                i += n;
            }
            out.push(' ');
            i += 1;
        } else if let Some(len) = char_literal_len(&c, i) {
            out.extend(std::iter::repeat_n(' ', len));
            i += len;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// At a raw string (`r"`, `r#"`, `br"`, ...: the `r` not ending an identifier), the number
/// of `#`.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    let free = |k: usize| k == 0 || !is_ident(c[k - 1]);
    let prefix_ok = c[i] == 'r' && (free(i) || (c[i - 1] == 'b' && free(i - 1)));
    if !prefix_ok {
        return None;
    }
    let mut j = i + 1;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some(j - i - 1)
}

/// At a char literal (`'x'`, `'\n'`, `'\u{..}'`, `'\''`), its length; `None` at a lifetime.
fn char_literal_len(c: &[char], i: usize) -> Option<usize> {
    if c[i] != '\'' {
        return None;
    }
    if c.get(i + 1) == Some(&'\\') {
        let mut j = i + 3;
        while j < c.len() && c[j] != '\'' && c[j] != '\n' {
            j += 1;
        }
        return (c.get(j) == Some(&'\'')).then_some(j - i + 1);
    }
    (c.get(i + 2) == Some(&'\'') && c.get(i + 1) != Some(&'\'')).then_some(3)
}

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].matches('\n').count() + 1
}

/// The offset of the bracket closing the one at `open` (`{`/`}` or `[`/`]`).
fn matching(code: &[u8], open: usize) -> Option<usize> {
    let (o, cl) = match code[open] {
        b'{' => (b'{', b'}'),
        b'[' => (b'[', b']'),
        b'(' => (b'(', b')'),
        _ => return None,
    };
    let mut depth = 0usize;
    for (k, &b) in code.iter().enumerate().skip(open) {
        if b == o {
            depth += 1;
        } else if b == cl {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Offsets where the word `w` starts (not inside a longer identifier).
fn words(code: &str, w: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let ident = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    code.match_indices(w)
        .map(|(k, _)| k)
        .filter(|&k| k == 0 || !ident(b[k - 1]))
        .filter(|&k| b.get(k + w.len()).is_none_or(|&x| !ident(x)))
        .collect()
}

/// The end (offset of its closing `}` or `;`) of the item starting at `from`: the first `{`
/// or `;` outside parentheses and brackets, and the `}` matching that `{`.
fn item_end(code: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    while k < code.len() {
        match code[k] {
            b'(' | b'[' => k = matching(code, k)?,
            b';' => return Some(k),
            b'{' => return matching(code, k),
            _ => {}
        }
        k += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Tests and functions.

/// Byte ranges of test code: items under `#[cfg(test)]`, and functions under `#[test]` or a
/// `#[...::test]` / `#[...::test(...)]` attribute. A file starting with `#![cfg(test)]` is
/// test code as a whole.
fn test_ranges(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    if code.replace(char::is_whitespace, "").contains("#![cfg(test)]") {
        return vec![(0, code.len())];
    }
    let mut out = Vec::new();
    for (at, _) in code.match_indices("#[") {
        let Some(end) = matching(b, at + 1) else { continue };
        let attr: String = code[at + 2..end].chars().filter(|c| !c.is_whitespace()).collect();
        let path = attr.split('(').next().unwrap_or("");
        if attr == "cfg(test)" || path == "test" || path.ends_with("::test") {
            if let Some(item_end) = item_end(b, end + 1) {
                out.push((at, item_end));
            }
        }
    }
    out
}

/// A function of the code: name, first line and length in lines.
#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// Every function with a body outside test code, with its length from the `fn` line to the
/// line of its closing brace.
fn functions(code: &str) -> Vec<Function> {
    let b = code.as_bytes();
    let tests = test_ranges(code);
    let mut out = Vec::new();
    for at in words(code, "fn") {
        if tests.iter().any(|&(s, e)| at >= s && at <= e) {
            continue;
        }
        let rest = code[at + 2..].trim_start();
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if name.is_empty() {
            continue; // a function pointer type, `fn(u8) -> u8`
        }
        let Some(end) = item_end(b, at + 2) else { continue };
        if b[end] != b'}' {
            continue; // a declaration without a body
        }
        let line = line_of(code, at);
        out.push(Function { name, line, lines: line_of(code, end) - line + 1 });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The import graph.

/// The module of a file of `actors/src` (`mfa/totp.rs` -> `mfa::totp`, `mfa/mod.rs` -> `mfa`,
/// `lib.rs` -> the root, ``).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// A path of a `use` tree: its segments and the name it brings into scope (the last segment,
/// the `as` alias, or `*` for a glob).
#[derive(Clone, Debug, PartialEq)]
struct UsePath {
    segs: Vec<String>,
    name: String,
}

/// The paths of a `use` tree (`crate::{a, b::{c, d as e}, f::*}` -> `crate::a`, `crate::b::c`,
/// `crate::b::d` (as `e`), `crate::f` (`*`)).
fn use_paths(tree: &str) -> Vec<UsePath> {
    let mut tokens = Vec::new();
    let mut it = tree.char_indices().peekable();
    while let Some((k, ch)) = it.next() {
        if is_ident(ch) {
            let mut end = k + ch.len_utf8();
            while let Some(&(j, c)) = it.peek().filter(|(_, c)| is_ident(*c)) {
                end = j + c.len_utf8();
                it.next();
            }
            tokens.push(tree[k..end].to_owned());
        } else if "{},*".contains(ch) {
            tokens.push(ch.to_string());
        }
    }
    let mut out = Vec::new();
    let mut pos = 0;
    parse_tree(&tokens, &mut pos, &[], &mut out);
    out
}

/// Parses one use tree from `tokens[*pos..]` under `prefix` (`::` was dropped by the lexer:
/// consecutive identifiers are segments; `as` renames; `self` in a group is the prefix).
fn parse_tree(tokens: &[String], pos: &mut usize, prefix: &[String], out: &mut Vec<UsePath>) {
    let mut segs = prefix.to_vec();
    let mut name = None;
    while let Some(t) = tokens.get(*pos) {
        match t.as_str() {
            "{" => {
                *pos += 1;
                while tokens.get(*pos).is_some_and(|t| t != "}") {
                    parse_tree(tokens, pos, &segs, out);
                    if tokens.get(*pos).is_some_and(|t| t == ",") {
                        *pos += 1;
                    }
                }
                *pos += 1;
                return;
            }
            "}" | "," => break,
            "*" => {
                name = Some("*".to_owned());
                *pos += 1;
            }
            "as" => {
                name = tokens.get(*pos + 1).cloned();
                *pos += 2;
            }
            "self" if !segs.is_empty() => *pos += 1,
            _ => {
                segs.push(t.clone());
                *pos += 1;
            }
        }
    }
    if let Some(last) = segs.last() {
        let name = name.unwrap_or_else(|| last.clone());
        out.push(UsePath { segs, name });
    }
}

/// Inline `mod name { ... }` blocks: name and byte range.
type InlineMods = Vec<(String, usize, usize)>;

/// The inline `mod name { ... }` blocks of a file.
fn inline_mods(code: &str) -> InlineMods {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in words(code, "mod") {
        let rest = &code[at + 3..];
        let name: String = rest.trim_start().chars().take_while(|&c| is_ident(c)).collect();
        let after = at + 3 + (rest.len() - rest.trim_start().len()) + name.len();
        let open = after + (code[after..].len() - code[after..].trim_start().len());
        if !name.is_empty() && b.get(open) == Some(&b'{') {
            if let Some(close) = matching(b, open) {
                out.push((name, open, close));
            }
        }
    }
    out
}

/// The module path (segments) in force at `offset`: the file's module and the inline modules
/// around `offset`.
fn context_at(file_module: &str, mods: &[(String, usize, usize)], offset: usize) -> Vec<String> {
    let mut ctx: Vec<String> = file_module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut around: Vec<&(String, usize, usize)> =
        mods.iter().filter(|(_, s, e)| *s < offset && offset < *e).collect();
    around.sort_by_key(|(_, s, _)| *s);
    ctx.extend(around.into_iter().map(|(n, _, _)| n.clone()));
    ctx
}

/// A path of a `use` declaration made absolute (segments below the crate root), or `None` if
/// it leaves the crate: `crate::`, `self::`, `super::`, or a first segment naming a child
/// module of the context.
fn resolve(path: &[String], ctx: &[String], modules: &BTreeSet<String>) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String>;
    let mut rest = &path[1..];
    match first.as_str() {
        "crate" => base = Vec::new(),
        "self" => base = ctx.to_vec(),
        "super" => {
            base = ctx.to_vec();
            base.pop();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => {
            base = ctx.to_vec();
            base.push(first.clone());
            if !modules.contains(&base.join("::")) {
                return None;
            }
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// What each module re-exports (`pub use`): module -> (name -> absolute path of the item).
type Reexports = HashMap<String, HashMap<String, Vec<String>>>;

/// The module an item lives in: the longest module prefix of its path (the root left out),
/// followed through that module's re-exports (a folder's `pub use child::Item` makes
/// `crate::folder::Item` an item of `folder::child`).
fn target(path: &[String], modules: &BTreeSet<String>, reexports: &Reexports) -> Option<String> {
    let mut path = path.to_vec();
    let mut found = None;
    for _ in 0..8 {
        let n = (1..=path.len()).rev().find(|&n| modules.contains(&path[..n].join("::")))?;
        let m = path[..n].join("::");
        let via = path.get(n).and_then(|next| reexports.get(&m)?.get(next));
        found = Some(m);
        match via {
            Some(to) if to.as_slice() != &path[..=n] => {
                path = to.iter().chain(&path[n + 1..]).cloned().collect();
            }
            _ => break,
        }
    }
    found
}

/// An edge of the graph and the first place that makes it.
type Edges = BTreeMap<(String, String), String>;

/// A path in a file's code: where, the path, and for a `use` declaration, the name it brings
/// in and whether it is public (a re-export).
#[derive(Debug)]
struct CodePath {
    at: usize,
    path: UsePath,
    use_decl: bool,
    public: bool,
}

/// Whether the `use` at `at` is preceded by `pub` or `pub(...)`.
fn is_pub(code: &str, at: usize) -> bool {
    let before = code[..at].trim_end();
    let before = match before.strip_suffix(')') {
        Some(b) => b.rfind('(').map_or(b, |k| b[..k].trim_end()),
        None => before,
    };
    before.ends_with("pub") && !before[..before.len() - 3].ends_with(is_ident)
}

/// The paths of a file's code: `use` trees, then inline `crate::a::b` paths outside `use`
/// declarations.
fn code_paths(code: &str) -> Vec<CodePath> {
    let mut out = Vec::new();
    let mut in_use = Vec::new();
    for at in words(code, "use") {
        let rest = code[at + 3..].trim_start();
        if !rest.starts_with(|c: char| is_ident(c) || c == '{' || c == ':') {
            continue;
        }
        let Some(end) = code[at..].find(';').map(|e| at + e) else { continue };
        in_use.push((at, end));
        let public = is_pub(code, at);
        for path in use_paths(&code[at + 3..end]) {
            out.push(CodePath { at, path, use_decl: true, public });
        }
    }
    for at in words(code, "crate") {
        if in_use.iter().any(|&(s, e)| at > s && at < e) || !code[at + 5..].starts_with("::") {
            continue;
        }
        let mut segs = vec!["crate".to_owned()];
        let mut k = at + 5;
        while code[k..].starts_with("::") {
            let seg: String = code[k + 2..].chars().take_while(|&c| is_ident(c)).collect();
            if seg.is_empty() {
                break;
            }
            k += 2 + seg.len();
            segs.push(seg);
        }
        let name = segs.last().cloned().unwrap_or_default();
        out.push(CodePath { at, path: UsePath { segs, name }, use_decl: false, public: false });
    }
    out
}

/// One source file: its module, where to say it is, its code (stripped).
struct Source {
    module: String,
    place: String,
    code: String,
}

/// The import graph of some sources: an edge for every `crate::` path of a `use` declaration
/// or of the code, to the module its item lives in ([`target`]).
fn graph_of(sources: &[Source]) -> (BTreeSet<String>, Edges) {
    let modules: BTreeSet<String> =
        sources.iter().map(|s| s.module.clone()).filter(|m| !m.is_empty()).collect();
    let parsed: Vec<(&Source, InlineMods, Vec<CodePath>)> =
        sources.iter().map(|s| (s, inline_mods(&s.code), code_paths(&s.code))).collect();
    let mut reexports = Reexports::new();
    for (s, mods, paths) in &parsed {
        for p in paths.iter().filter(|p| p.use_decl && p.public && p.path.name != "*") {
            let ctx = context_at(&s.module, mods, p.at);
            if let Some(abs) = resolve(&p.path.segs, &ctx, &modules) {
                reexports.entry(ctx.join("::")).or_default().insert(p.path.name.clone(), abs);
            }
        }
    }
    let mut edges = Edges::new();
    for (s, _, paths) in &parsed {
        if s.module.is_empty() {
            continue;
        }
        for p in paths.iter().filter(|p| p.path.segs.first().is_some_and(|f| f == "crate")) {
            let Some(to) = target(&p.path.segs[1..], &modules, &reexports) else { continue };
            if to != s.module {
                let place = format!("{}:{}", s.place, line_of(&s.code, p.at));
                edges.entry((s.module.clone(), to)).or_insert(place);
            }
        }
    }
    (modules, edges)
}

/// The import graph of the modules of a crate's `src` folder.
fn import_graph(src: &Path) -> (BTreeSet<String>, Edges) {
    let sources: Vec<Source> = rust_files(src)
        .iter()
        .map(|f| Source {
            module: module_of(src, f),
            place: rel(f),
            code: strip(&fs::read_to_string(f).unwrap()),
        })
        .collect();
    graph_of(&sources)
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles_sccs(nodes: &BTreeSet<String>, edges: &Edges) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        adj: HashMap<&'a str, Vec<&'a str>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.adj.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    scc.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut adj: HashMap<&str, Vec<&str>> = HashMap::new();
    for (a, b) in edges.keys() {
        adj.entry(a.as_str()).or_default().push(b.as_str());
    }
    let mut t = Tarjan {
        adj,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for n in nodes {
        if !t.index.contains_key(n.as_str()) {
            t.visit(n);
        }
    }
    t.out.sort();
    t.out
}

/// For every edge inside `scc`, the shortest cycle through it (`a -> b -> ... -> a`), each
/// cycle once.
fn shortest_cycles(scc: &[String], edges: &Edges) -> Vec<Vec<String>> {
    let inside: BTreeSet<&str> = scc.iter().map(String::as_str).collect();
    let adj = |v: &str| -> Vec<String> {
        edges.keys().filter(|(a, b)| a == v && inside.contains(b.as_str())).map(|(_, b)| b.clone()).collect()
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (a, b) in edges.keys().filter(|(a, b)| inside.contains(a.as_str()) && inside.contains(b.as_str())) {
        // Shortest path b -> a, then the edge a -> b closes it.
        let mut prev: HashMap<String, String> = HashMap::new();
        let mut todo = VecDeque::from([b.clone()]);
        while let Some(v) = todo.pop_front() {
            if v == *a {
                break;
            }
            for w in adj(&v) {
                if w != *b && !prev.contains_key(&w) {
                    prev.insert(w.clone(), v.clone());
                    todo.push_back(w);
                }
            }
        }
        let mut path = vec![a.clone()];
        while let Some(p) = prev.get(path.last().unwrap()).filter(|_| path.last() != Some(b)) {
            path.push(p.clone());
        }
        path.reverse(); // b ... a
        let mut cycle = vec![a.clone()];
        cycle.extend(path.into_iter().filter(|m| m != a));
        // Start every cycle at its smallest module, so each is reported once.
        let start = (0..cycle.len()).min_by_key(|&k| &cycle[k]).unwrap_or(0);
        cycle.rotate_left(start);
        if seen.insert(cycle.clone()) {
            out.push(cycle);
        }
    }
    out
}

fn describe_cycle(cycle: &[String], edges: &Edges) -> String {
    let mut s = cycle.join(" -> ");
    s.push_str(&format!(" -> {}", cycle[0]));
    for k in 0..cycle.len() {
        let (a, b) = (&cycle[k], &cycle[(k + 1) % cycle.len()]);
        if let Some(place) = edges.get(&(a.clone(), b.clone())) {
            s.push_str(&format!("\n        {a} -> {b}: {place}"));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn no_import_cycle_among_the_modules_of_actors() {
    let (modules, edges) = import_graph(&workspace().join("actors/src"));
    let sccs = cycles_sccs(&modules, &edges);
    for scc in &sccs {
        eprintln!("import cycle among {} modules: {}", scc.len(), scc.join(", "));
        for cycle in shortest_cycles(scc, &edges) {
            eprintln!("    {}", describe_cycle(&cycle, &edges));
        }
    }
    assert!(sccs.is_empty(), "{} import cycle(s) among the modules of actors/src (listed above)", sccs.len());
}

#[test]
fn no_file_over_600_lines_in_actors_or_node() {
    let mut long = Vec::new();
    for dir in ["actors", "node"] {
        for f in rust_files(&workspace().join(dir)) {
            let n = fs::read_to_string(&f).unwrap().lines().count();
            if n > MAX_FILE_LINES {
                long.push(format!("{}: {n} lines", rel(&f)));
            }
        }
    }
    for l in &long {
        eprintln!("{l}");
    }
    assert!(long.is_empty(), "{} file(s) over {MAX_FILE_LINES} lines (listed above)", long.len());
}

#[test]
fn no_function_over_80_lines_outside_tests() {
    let mut long = Vec::new();
    for dir in ["actors/src", "node/src"] {
        for f in rust_files(&workspace().join(dir)) {
            let code = strip(&fs::read_to_string(&f).unwrap());
            for func in functions(&code).into_iter().filter(|func| func.lines > MAX_FN_LINES) {
                long.push(format!("{}:{} {} {} lines", rel(&f), func.line, func.name, func.lines));
            }
        }
    }
    for l in &long {
        eprintln!("{l}");
    }
    assert!(long.is_empty(), "{} function(s) over {MAX_FN_LINES} lines (listed above)", long.len());
}

/// Every `/admin/...` route registered in `node/src/routes`, with the file and name of its
/// handler (`admin::admin_audit` is `admin.rs`'s `admin_audit`; a bare name is in the file that
/// registers it).
fn admin_routes() -> Vec<(String, PathBuf, String)> {
    let dir = workspace().join("node/src/routes");
    let mut out = Vec::new();
    for f in rust_files(&dir) {
        let src = fs::read_to_string(&f).unwrap();
        for (at, _) in src.match_indices(".route(\"/admin/") {
            let rest = &src[at + 8..];
            let route: String = rest.chars().take_while(|&c| c != '"').collect();
            let to = rest.find(".to(").expect("a handler") + 4;
            let handler: String = rest[to..].chars().take_while(|&c| is_ident(c) || c == ':').collect();
            let (file, name) = match handler.rsplit_once("::") {
                Some((module, name)) => (dir.join(format!("{module}.rs")), name.to_owned()),
                None => (f.clone(), handler.clone()),
            };
            out.push((route, file, name));
        }
    }
    out
}

/// The body of function `name` in the (stripped) code of a file.
fn body_of<'a>(code: &'a str, name: &str) -> Option<&'a str> {
    let b = code.as_bytes();
    words(code, "fn").into_iter().find_map(|at| {
        let rest = code[at + 2..].trim_start();
        let found: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if found != name {
            return None;
        }
        let end = item_end(b, at + 2)?;
        let open = code[at..end].find(") ->").map_or(at, |k| at + k);
        let open = open + code[open..end].find('{')?;
        Some(&code[open..=end])
    })
}

/// Every admin route reaches the domain through exactly one message to the control actor: its
/// handler parses, sends one command (`control.send(..)`) and maps the answer, and touches
/// nothing else of the node (no hub, no store, no domain function).
#[test]
fn every_admin_route_is_one_control_message() {
    let routes = admin_routes();
    assert!(routes.len() >= 15, "the route table was not read: {routes:?}");
    let mut bad = Vec::new();
    for (route, file, name) in &routes {
        let code = strip(&fs::read_to_string(file).unwrap());
        let Some(body) = body_of(&code, name) else {
            bad.push(format!("{route}: handler {name} not found in {}", rel(file)));
            continue;
        };
        let dense: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let sends = dense.matches("control.send(").count();
        let domain = ["hub", "store", "views::", "mfa::", "accounts::", "sessions::", "groups::", "keys::"]
            .into_iter()
            .filter(|w| if w.ends_with("::") { body.contains(w) } else { !words(body, w).is_empty() })
            .collect::<Vec<_>>();
        if sends != 1 || !domain.is_empty() {
            bad.push(format!(
                "{route} ({}::{name}): {sends} control messages, also uses {domain:?}",
                rel(file)
            ));
        }
    }
    for b in &bad {
        eprintln!("{b}");
    }
    assert!(bad.is_empty(), "{} admin route(s) not one control message (listed above)", bad.len());
}

// ---------------------------------------------------------------------------------------------
// The parsers themselves.

#[test]
fn strip_blanks_comments_strings_and_chars_but_keeps_lines_and_lifetimes() {
    let src = "fn a<'x>(s: &'x str) { // }\n let c = '{'; let s = \"}\\\"\"; /* { /* } */ */ }\nr#\"{\"#";
    let code = strip(src);
    assert_eq!(code.len(), src.len());
    assert_eq!(code.lines().count(), src.lines().count());
    assert!(code.contains("<'x>") && code.contains("&'x str"));
    assert_eq!(code.matches('{').count(), 1);
    assert_eq!(code.matches('}').count(), 1);
}

#[test]
fn multi_line_use_groups_expand_to_every_path() {
    let code = strip(
        "pub(crate) use crate::{\n    a,\n    b::{c, d as e}, // x::y\n    f::*,\n    g::{self, h},\n};",
    );
    let paths: Vec<(String, String, bool)> =
        code_paths(&code).into_iter().map(|p| (p.path.segs.join("::"), p.path.name, p.public)).collect();
    let want = [
        ("crate::a", "a"),
        ("crate::b::c", "c"),
        ("crate::b::d", "e"),
        ("crate::f", "*"),
        ("crate::g", "g"),
        ("crate::g::h", "h"),
    ];
    assert_eq!(paths, want.map(|(p, n)| (p.to_owned(), n.to_owned(), true)));
    assert!(!code_paths(&strip("let used = 1; use crate::a;"))[0].public);
}

#[test]
fn edges_go_to_the_module_an_item_lives_in_through_re_exports() {
    let src = |module: &str, code: &str| Source {
        module: module.to_owned(),
        place: format!("{module}.rs"),
        code: strip(code),
    };
    let sources = [
        src("mfa", "pub mod data;\npub use data::{forget, Rec as Record};\npub use self::data::*;"),
        src("mfa::data", "pub fn forget() {}\npub struct Rec;"),
        src("mfa::totp", "use super::data::Rec;\nfn f() { crate::now_ms(); }"),
        src("sessions", "use crate::mfa::Record;\nfn g() { crate::mfa::forget(); }"),
        src("hub", "use crate::mfa;\nfn h() { let _ = crate::mfa::data::Rec; }"),
    ];
    let (modules, edges) = graph_of(&sources);
    assert_eq!(modules.len(), 5);
    let edges: Vec<(String, String)> = edges.into_keys().collect();
    // super:: paths and the crate root make no edge; a re-exported item is its module's; a
    // folder module named as such is the folder module.
    let want = [("hub", "mfa"), ("hub", "mfa::data"), ("sessions", "mfa::data")];
    assert_eq!(edges, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
}

#[test]
fn a_small_cycle_is_found_and_reported_once() {
    let mut edges = Edges::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("b", "a")] {
        edges.insert((a.into(), b.into()), format!("{a}.rs:1"));
    }
    let nodes: BTreeSet<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
    let sccs = cycles_sccs(&nodes, &edges);
    assert_eq!(sccs, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    let cycles: Vec<String> = shortest_cycles(&sccs[0], &edges).iter().map(|c| c.join(" ")).collect();
    assert_eq!(cycles, ["a b", "a b c"]);
}

#[test]
fn functions_are_measured_from_fn_to_brace_and_tests_are_skipped() {
    let src = "fn one() {\n    let s = \"}\";\n}\n\
               trait T { fn decl(&self); }\n\
               #[test]\nfn a_test() {\n}\n\
               #[tokio::test(flavor = \"multi_thread\")]\nasync fn b_test() {}\n\
               #[cfg(test)]\nmod tests {\n    fn helper() {}\n}\n\
               fn two(f: fn(u8) -> u8) -> [u8; 2] { [f(1), 2] }\n";
    let found = functions(&strip(src));
    let want = [
        Function { name: "one".into(), line: 1, lines: 3 },
        Function { name: "two".into(), line: 14, lines: 1 },
    ];
    assert_eq!(found, want);
}
