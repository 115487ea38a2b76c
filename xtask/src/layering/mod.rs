//! `cargo xtask layering [CRATE_SRC ...]`: no import cycle between the
//! top-level modules of a crate.
//!
//! It parses a crate's sources with `syn` (from `src/lib.rs`, or `src/main.rs`
//! when there is no library, following `mod foo;` to `foo.rs` or `foo/mod.rs`
//! and nested modules to `foo/bar.rs`) and builds the graph of its top-level
//! modules (`http`, `store`, `user`, ...): module `a` depends on module `b`
//! when code anywhere inside `a` names a path into `b`:
//!
//! - `use crate::b::X`, grouped `use crate::{b::X, c}`, `use self::`/`super::`
//!   paths that resolve into `b` (from `a`'s nested modules);
//! - `crate::b::f()`, `super::super::b::T` in expressions, types, patterns and
//!   trait bounds, and in the tokens of macro calls and attributes;
//! - `crate::X` where the crate root re-exports `X` from `b` (`pub use b::X;`).
//!
//! The root file itself is not a module of the graph (its re-exports are not
//! edges), and `#[cfg(test)]` / `#[test]` items are skipped: tests may cross
//! layers. Edition 2018+ paths are assumed: a bare `b::X` names an external
//! crate or a child module, never a sibling.
//!
//! For each crate it prints the number of modules and edges, every cycle as
//! `a -> b -> a` with the file:line of a path that creates each edge, and a
//! layered topological order (dependencies first), and it fails if any crate has
//! a cycle. Without arguments it checks [`DEFAULT_CRATES`] (those that exist);
//! `--edges` also lists every edge with the first place that creates it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::visit::Visit;

/// The crates `cargo xtask layering` checks by default: the core, its HTTP
/// layer, both servers (origin and edge) and the one-request edges' feed.
/// Missing ones are skipped.
pub(crate) const DEFAULT_CRATES: [&str; 7] = [
    "core/src",
    "core/wire/src",
    "core/http/src",
    "edge-worker/src",
    "edge-worker/feed/src",
    "origin-server/src",
    "origin-server/lab/src",
];

/// Where a path that creates an edge is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Site {
    /// The source file.
    pub(crate) file: PathBuf,
    /// 1-based line of the path's first segment.
    pub(crate) line: usize,
    /// The path as written (`crate::user::User`, `super::super::store::Store`).
    pub(crate) path: String,
}

/// The dependency graph between a crate's top-level modules.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// The crate's root file (`lib.rs` or `main.rs`).
    pub(crate) root: PathBuf,
    /// Every top-level module (excluding `#[cfg(test)]` ones).
    pub(crate) modules: BTreeSet<String>,
    /// `(from, to)` -> where `from` names `to`, in file and line order.
    pub(crate) edges: BTreeMap<(String, String), Vec<Site>>,
}

/// A strongly connected set of modules with more than one member, and its
/// elementary cycles (each starting at its smallest module).
#[derive(Debug)]
pub(crate) struct Tangle {
    /// The modules, sorted.
    pub(crate) members: Vec<String>,
    /// Elementary cycles, shortest first, at most [`MAX_CYCLES`].
    pub(crate) cycles: Vec<Vec<String>>,
    /// Whether there were more than [`MAX_CYCLES`] cycles.
    pub(crate) truncated: bool,
}

/// The most elementary cycles listed per strongly connected set.
pub(crate) const MAX_CYCLES: usize = 32;

/// Reads the module graph of the crate whose `src/` directory is `crate_src`.
pub(crate) fn module_graph(crate_src: &Path) -> Result<Graph> {
    let root = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| crate_src.join(f))
        .find(|p| p.is_file())
        .with_context(|| format!("{} has neither lib.rs nor main.rs", crate_src.display()))?;
    let file = parse(&root)?;

    // Top-level modules, the root's re-exports, and where each module's code lives.
    let mut graph = Graph { root: root.clone(), ..Graph::default() };
    let mut pending: Vec<Unit> = Vec::new();
    let mut inline: Vec<(&syn::ItemMod, &[syn::Item])> = Vec::new();
    let mut root_uses: Vec<(Vec<String>, Option<String>)> = Vec::new();
    for item in &file.items {
        if is_test_only(item_attrs(item)) {
            continue;
        }
        match item {
            syn::Item::Mod(m) => {
                let name = m.ident.to_string();
                graph.modules.insert(name.clone());
                match &m.content {
                    Some((_, items)) => inline.push((m, items)),
                    None => pending.push(Unit::for_mod(m, &root, crate_src, vec![name])?),
                }
            }
            syn::Item::Use(u) => {
                let mut leaves = Vec::new();
                flatten_use(&u.tree, &mut Vec::new(), &mut leaves);
                root_uses.extend(leaves.into_iter().map(|l| (l.segments, l.alias)));
            }
            _ => {}
        }
    }
    // `crate::X` where the root has `use b::X;` (or `self::b::X`, `crate::b::X`) names `b`.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for (segments, alias) in root_uses {
        let rel = match segments.first().map(String::as_str) {
            Some("crate" | "self") => &segments[1..],
            _ => &segments[..],
        };
        if rel.len() < 2 || !graph.modules.contains(&rel[0]) {
            continue;
        }
        let Some(name) = alias.or_else(|| rel.last().cloned()) else { continue };
        if name != "*" && name != "_" && !graph.modules.contains(&name) {
            reexports.insert(name, rel[0].clone());
        }
    }

    let ctx = Known { modules: &graph.modules, reexports: &reexports };
    let mut add = |c: Collector<'_>, pending: &mut Vec<Unit>| {
        let from = c.stack[0].path[0].clone();
        for (to, site) in c.found {
            if to != from {
                graph.edges.entry((from.clone(), to)).or_default().push(site);
            }
        }
        pending.extend(c.mods);
    };
    for (m, items) in inline {
        let scope = Scope { path: vec![m.ident.to_string()], child_dir: crate_src.join(m.ident.to_string()) };
        let mut c = Collector { ctx: &ctx, file: &root, stack: vec![scope], found: Vec::new(), mods: Vec::new() };
        for item in items {
            c.visit_item(item);
        }
        add(c, &mut pending);
    }
    while let Some(unit) = pending.pop() {
        let parsed = parse(&unit.file)?;
        let mut c =
            Collector { ctx: &ctx, file: &unit.file, stack: vec![unit.scope], found: Vec::new(), mods: Vec::new() };
        c.visit_file(&parsed);
        add(c, &mut pending);
    }
    for sites in graph.edges.values_mut() {
        sites.sort();
        sites.dedup();
    }
    Ok(graph)
}

impl Graph {
    /// The modules `m` depends on.
    fn deps<'a>(&'a self, m: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.edges.keys().filter(move |(a, _)| a == m).map(|(_, b)| b.as_str())
    }

    /// Strongly connected components (Tarjan), each sorted; a component's
    /// dependencies come before it.
    pub(crate) fn components(&self) -> Vec<Vec<String>> {
        struct Tarjan<'g> {
            g: &'g Graph,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            out: Vec<Vec<String>>,
        }
        impl<'g> Tarjan<'g> {
            fn visit(&mut self, v: &'g str) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                self.on_stack.insert(v);
                for w in self.g.deps(v) {
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let lw = self.low[w];
                        let lv = self.low.get_mut(v).expect("visited");
                        *lv = (*lv).min(lw);
                    } else if self.on_stack.contains(w) {
                        let iw = self.index[w];
                        let lv = self.low.get_mut(v).expect("visited");
                        *lv = (*lv).min(iw);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        comp.push(w.to_string());
                        if w == v {
                            break;
                        }
                    }
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
        let mut t = Tarjan {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for m in &self.modules {
            if !t.index.contains_key(m.as_str()) {
                t.visit(m);
            }
        }
        t.out
    }

    /// Every strongly connected set of more than one module, with its cycles.
    pub(crate) fn tangles(&self) -> Vec<Tangle> {
        let mut out = Vec::new();
        for members in self.components().into_iter().filter(|c| c.len() > 1) {
            let set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
            let mut cycles = Vec::new();
            let mut budget = 100_000usize;
            for (i, start) in members.iter().enumerate() {
                // Cycles whose smallest member is `start`: only later members on the path.
                let allowed: BTreeSet<&str> = members[i..].iter().map(String::as_str).collect();
                let mut path = vec![start.as_str()];
                self.cycles_from(start, &allowed, &set, &mut path, &mut cycles, &mut budget);
            }
            cycles.sort_by(|a: &Vec<String>, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            let truncated = cycles.len() > MAX_CYCLES || budget == 0;
            cycles.truncate(MAX_CYCLES);
            out.push(Tangle { members, cycles, truncated });
        }
        out.sort_by(|a, b| a.members.cmp(&b.members));
        out
    }

    fn cycles_from<'a>(
        &'a self,
        start: &str,
        allowed: &BTreeSet<&'a str>,
        scc: &BTreeSet<&str>,
        path: &mut Vec<&'a str>,
        out: &mut Vec<Vec<String>>,
        budget: &mut usize,
    ) {
        let last = *path.last().expect("path starts with start");
        for w in self.deps(last) {
            if *budget == 0 || out.len() > MAX_CYCLES * 8 {
                return;
            }
            *budget -= 1;
            if w == start {
                let mut c: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                c.push(start.to_string());
                out.push(c);
            } else if scc.contains(w) && allowed.contains(w) && !path.contains(&w) {
                path.push(w);
                self.cycles_from(start, allowed, scc, path, out, budget);
                path.pop();
            }
        }
    }

    /// Layers of a topological order, dependencies first: layer 0 depends on
    /// nothing in the crate, layer n on layers below n. Modules in one cycle
    /// form one entry.
    pub(crate) fn layers(&self) -> Vec<Vec<Vec<String>>> {
        let comps = self.components();
        let comp_of: BTreeMap<&str, usize> =
            comps.iter().enumerate().flat_map(|(i, c)| c.iter().map(move |m| (m.as_str(), i))).collect();
        // Tarjan lists a component after every component it depends on.
        let mut layer = vec![0usize; comps.len()];
        for (i, c) in comps.iter().enumerate() {
            for m in c {
                for d in self.deps(m) {
                    let j = comp_of[d];
                    if j != i {
                        layer[i] = layer[i].max(layer[j] + 1);
                    }
                }
            }
        }
        let depth = layer.iter().copied().max().map_or(0, |d| d + 1);
        let mut out = vec![Vec::new(); depth];
        for (i, c) in comps.into_iter().enumerate() {
            out[layer[i]].push(c);
        }
        for l in &mut out {
            l.sort();
        }
        out
    }

    /// The number of edges between distinct modules.
    pub(crate) fn edge_count(&self) -> usize {
        self.edges.len()
    }
}

/// `cargo xtask layering [CRATE_SRC ...]`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let all_edges = args.iter().any(|a| a == "--edges");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--edges").collect();
    if args.iter().any(|a| a.starts_with('-')) {
        bail!("usage: cargo xtask layering [--edges] [CRATE_SRC ...] (default: {})", DEFAULT_CRATES.join(" "));
    }
    let crates: Vec<PathBuf> = if args.is_empty() {
        DEFAULT_CRATES.iter().map(|c| root.join(c)).filter(|p| p.is_dir()).collect()
    } else {
        args.iter().map(|a| root.join(a)).collect()
    };
    let mut tangled = Vec::new();
    for src in &crates {
        let graph = module_graph(src)?;
        let mut report = report(&graph, root);
        if all_edges {
            let _ = writeln!(report, "  every edge (first site):");
            for ((a, b), sites) in &graph.edges {
                let _ = writeln!(
                    report,
                    "    {a} -> {b}  {}:{}  {}",
                    shown(&sites[0].file, root),
                    sites[0].line,
                    sites[0].path
                );
            }
        }
        print!("{report}");
        if !graph.tangles().is_empty() {
            tangled.push(shown(src, root));
        }
    }
    if !tangled.is_empty() {
        bail!("import cycles between modules in {}", tangled.join(", "));
    }
    println!("\nno import cycle between the modules of {} crates", crates.len());
    Ok(())
}

/// The report printed for one crate.
pub(crate) fn report(graph: &Graph, root: &Path) -> String {
    let mut s = String::new();
    let tangles = graph.tangles();
    let cycles: usize = tangles.iter().map(|t| t.cycles.len()).sum();
    let _ = writeln!(
        s,
        "\n{}: {} modules, {} edges: {}",
        shown(&graph.root, root),
        graph.modules.len(),
        graph.edge_count(),
        if tangles.is_empty() {
            "acyclic".to_string()
        } else {
            format!("{cycles} cycle(s) in {} strongly connected set(s)", tangles.len())
        }
    );
    for t in &tangles {
        let _ = writeln!(s, "  cycle set {{{}}}:", t.members.join(", "));
        for c in &t.cycles {
            let _ = writeln!(s, "    {}", c.join(" -> "));
        }
        if t.truncated {
            let _ = writeln!(s, "    ... (more cycles not listed)");
        }
        let _ = writeln!(s, "    edges inside the set (cutting enough of them removes the cycles):");
        for ((a, b), sites) in graph.edges.iter().filter(|((a, b), _)| t.members.contains(a) && t.members.contains(b)) {
            let _ = writeln!(s, "      {a} -> {b}:");
            for site in sites.iter().take(6) {
                let _ = writeln!(s, "        {}:{}  {}", shown(&site.file, root), site.line, site.path);
            }
            if sites.len() > 6 {
                let _ = writeln!(s, "        ... and {} more", sites.len() - 6);
            }
        }
    }
    let _ = writeln!(s, "  order (dependencies first; {{..}} is a cycle):");
    for (i, layer) in graph.layers().iter().enumerate() {
        let names: Vec<String> =
            layer.iter().map(|c| if c.len() == 1 { c[0].clone() } else { format!("{{{}}}", c.join(", ")) }).collect();
        let _ = writeln!(s, "    {i}: {}", names.join(", "));
    }
    s
}

fn shown(p: &Path, root: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn parse(file: &Path) -> Result<syn::File> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))
}

/// What the collector knows about the crate.
struct Known<'a> {
    modules: &'a BTreeSet<String>,
    reexports: &'a BTreeMap<String, String>,
}

/// The module being read: its path from the crate root and the directory its
/// out-of-line child modules live in.
#[derive(Clone)]
struct Scope {
    path: Vec<String>,
    child_dir: PathBuf,
}

/// A module file to read.
struct Unit {
    file: PathBuf,
    scope: Scope,
}

impl Unit {
    /// The file of the out-of-line `mod` declared in `decl_file`, whose
    /// out-of-line children live in `decl_dir`, with module path `path`.
    fn for_mod(m: &syn::ItemMod, decl_file: &Path, decl_dir: &Path, path: Vec<String>) -> Result<Self> {
        let name = m.ident.to_string();
        let file = if let Some(p) = path_attr(&m.attrs) {
            decl_dir.join(p)
        } else {
            let flat = decl_dir.join(format!("{name}.rs"));
            let nested = decl_dir.join(&name).join("mod.rs");
            if flat.is_file() {
                flat
            } else if nested.is_file() {
                nested
            } else {
                bail!("{}: `mod {name};` has neither {} nor {}", decl_file.display(), flat.display(), nested.display());
            }
        };
        let mod_rs = file.file_name().is_some_and(|f| f == "mod.rs");
        let dir = file.parent().unwrap_or(decl_dir);
        let child_dir = if mod_rs { dir.to_path_buf() } else { dir.join(file.file_stem().unwrap_or_default()) };
        Ok(Unit { file, scope: Scope { path, child_dir } })
    }
}

/// Walks one file (or inline module), collecting the top-level modules its
/// paths name, and the out-of-line modules it declares.
struct Collector<'a> {
    ctx: &'a Known<'a>,
    file: &'a Path,
    stack: Vec<Scope>,
    found: Vec<(String, Site)>,
    mods: Vec<Unit>,
}

impl Collector<'_> {
    /// Records the top-level module that `segments` (written in the current
    /// module) names, if it starts with `crate`, `self` or `super`.
    fn resolve(&mut self, segments: &[String], span: Span) {
        let here = &self.stack.last().expect("a scope").path;
        let (base, rest): (&[String], &[String]) = match segments.first().map(String::as_str) {
            Some("crate") => (&[], &segments[1..]),
            Some("self") => (here, &segments[1..]),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                if ups > here.len() {
                    return; // not valid Rust; rustc will say so
                }
                (&here[..here.len() - ups], &segments[ups..])
            }
            _ => return,
        };
        let first = base.first().or(rest.first());
        let Some(first) = first else { return };
        let target = if self.ctx.modules.contains(first) {
            first.clone()
        } else if base.is_empty() {
            // `crate::X`: the root's item, or its re-export of a module's item.
            match self.ctx.reexports.get(first) {
                Some(m) => m.clone(),
                None => return,
            }
        } else {
            return;
        };
        let site = Site { file: self.file.to_path_buf(), line: span.start().line, path: segments.join("::") };
        self.found.push((target, site));
    }

    /// Finds `crate::a::b`, `super::..`, `self::..` paths in a token stream
    /// (macro arguments, attribute arguments).
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tts: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tts.len() {
            match &tts[i] {
                TokenTree::Group(g) => self.scan_tokens(g.stream()),
                TokenTree::Ident(id) if is_path_start(&id.to_string()) && is_path_sep(&tts, i + 1) => {
                    let span = id.span();
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    while is_path_sep(&tts, j) {
                        match tts.get(j + 2) {
                            Some(TokenTree::Ident(next)) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    self.resolve(&segments, span);
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

fn is_path_start(s: &str) -> bool {
    matches!(s, "crate" | "self" | "super")
}

fn is_path_sep(tts: &[TokenTree], i: usize) -> bool {
    matches!((tts.get(i), tts.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == proc_macro2::Spacing::Joint && b.as_char() == ':')
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !is_test_only(item_attrs(item)) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let scope = self.stack.last().expect("a scope").clone();
        let mut path = scope.path.clone();
        path.push(m.ident.to_string());
        for attr in &m.attrs {
            self.visit_attribute(attr);
        }
        match &m.content {
            Some((_, items)) => {
                self.stack.push(Scope { path, child_dir: scope.child_dir.join(m.ident.to_string()) });
                for item in items {
                    self.visit_item(item);
                }
                self.stack.pop();
            }
            None => match Unit::for_mod(m, self.file, &scope.child_dir, path) {
                Ok(unit) => self.mods.push(unit),
                Err(e) => eprintln!("warning: {e:#}"),
            },
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for attr in &u.attrs {
            self.visit_attribute(attr);
        }
        let mut leaves = Vec::new();
        flatten_use(&u.tree, &mut Vec::new(), &mut leaves);
        for leaf in leaves {
            self.resolve(&leaf.segments, leaf.span);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            if let Some(first) = p.segments.first() {
                self.resolve(&segments, first.ident.span());
            }
        }
        syn::visit::visit_path(self, p);
    }

    // `pub(in crate::a)` / `pub(super)` only restrict visibility: no dependency.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.scan_tokens(m.tokens.clone());
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &a.meta {
            self.scan_tokens(list.tokens.clone());
        }
    }

    fn visit_impl_item(&mut self, i: &'ast syn::ImplItem) {
        let attrs = match i {
            syn::ImplItem::Const(x) => &x.attrs,
            syn::ImplItem::Fn(x) => &x.attrs,
            syn::ImplItem::Type(x) => &x.attrs,
            syn::ImplItem::Macro(x) => &x.attrs,
            _ => return syn::visit::visit_impl_item(self, i),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_impl_item(self, i);
        }
    }

    fn visit_trait_item(&mut self, i: &'ast syn::TraitItem) {
        let attrs = match i {
            syn::TraitItem::Const(x) => &x.attrs,
            syn::TraitItem::Fn(x) => &x.attrs,
            syn::TraitItem::Type(x) => &x.attrs,
            syn::TraitItem::Macro(x) => &x.attrs,
            _ => return syn::visit::visit_trait_item(self, i),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_trait_item(self, i);
        }
    }

    fn visit_field(&mut self, f: &'ast syn::Field) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_field(self, f);
        }
    }

    fn visit_variant(&mut self, v: &'ast syn::Variant) {
        if !is_test_only(&v.attrs) {
            syn::visit::visit_variant(self, v);
        }
    }

    fn visit_local(&mut self, l: &'ast syn::Local) {
        if !is_test_only(&l.attrs) {
            syn::visit::visit_local(self, l);
        }
    }
}

/// One path of a `use` tree: `use crate::{a::X, b as c}` has `crate::a::X`
/// and `crate::b` (alias `c`).
struct UseLeaf {
    segments: Vec<String>,
    alias: Option<String>,
    span: Span,
}

fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<(String, Span)>, out: &mut Vec<UseLeaf>) {
    let leaf = |prefix: &[(String, Span)], last: Option<(String, Span)>, alias: Option<String>| {
        // The leaf's own line: in a multi-line group, the line that names it.
        let span = last.as_ref().or(prefix.last()).map_or_else(Span::call_site, |(_, s)| *s);
        let mut segments: Vec<String> = prefix.iter().map(|(s, _)| s.clone()).collect();
        // `use crate::a::{self}` names `crate::a`.
        if let Some((l, _)) = last.filter(|(l, _)| l != "self" || segments.is_empty()) {
            segments.push(l);
        }
        UseLeaf { segments, alias, span }
    };
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push((p.ident.to_string(), p.ident.span()));
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => out.push(leaf(prefix, Some((n.ident.to_string(), n.ident.span())), None)),
        syn::UseTree::Rename(r) => {
            out.push(leaf(prefix, Some((r.ident.to_string(), r.ident.span())), Some(r.rename.to_string())))
        }
        syn::UseTree::Glob(g) => {
            let mut l = leaf(prefix, None, Some("*".into()));
            l.span = g.star_token.span;
            out.push(l)
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(x) => &x.attrs,
        syn::Item::Enum(x) => &x.attrs,
        syn::Item::ExternCrate(x) => &x.attrs,
        syn::Item::Fn(x) => &x.attrs,
        syn::Item::ForeignMod(x) => &x.attrs,
        syn::Item::Impl(x) => &x.attrs,
        syn::Item::Macro(x) => &x.attrs,
        syn::Item::Mod(x) => &x.attrs,
        syn::Item::Static(x) => &x.attrs,
        syn::Item::Struct(x) => &x.attrs,
        syn::Item::Trait(x) => &x.attrs,
        syn::Item::TraitAlias(x) => &x.attrs,
        syn::Item::Type(x) => &x.attrs,
        syn::Item::Union(x) => &x.attrs,
        syn::Item::Use(x) => &x.attrs,
        _ => &[],
    }
}

/// `#[test]`, `#[cfg(test)]` and `#[cfg(all(test, ..))]`: compiled for tests only.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if a.path().is_ident("test") {
            return true;
        }
        if !a.path().is_ident("cfg") {
            return false;
        }
        a.parse_args::<syn::Meta>().is_ok_and(|m| cfg_needs_test(&m))
    })
}

/// Whether a `cfg` predicate can only hold when compiling tests.
fn cfg_needs_test(m: &syn::Meta) -> bool {
    match m {
        syn::Meta::Path(p) => p.is_ident("test"),
        syn::Meta::List(l) if l.path.is_ident("all") => l
            .parse_args_with(syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
            .is_ok_and(|args| args.iter().any(cfg_needs_test)),
        syn::Meta::List(l) if l.path.is_ident("any") => l
            .parse_args_with(syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
            .is_ok_and(|args| !args.is_empty() && args.iter().all(cfg_needs_test)),
        _ => false,
    }
}

/// `#[path = "x.rs"]`.
fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

#[cfg(test)]
mod tests;
