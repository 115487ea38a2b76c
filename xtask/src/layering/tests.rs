//! Unit tests of [`super`].

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A throwaway crate `src/` directory; removed on drop.
struct Fixture(PathBuf);

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-layering-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Fixture(dir)
    }

    fn graph(&self) -> Graph {
        module_graph(&self.0).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn edges(g: &Graph) -> Vec<String> {
    g.edges.keys().map(|(a, b)| format!("{a}->{b}")).collect()
}

#[test]
fn detects_a_cycle_with_its_sites() {
    let f = Fixture::new(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub use a::A;\n"),
        ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
        ("b.rs", "pub struct B;\nimpl B {\n    fn f() -> crate::c::C { todo!() }\n}\n"),
        ("c.rs", "pub struct C;\npub fn g() -> crate::A { todo!() }\n"),
    ]);
    let g = f.graph();
    assert_eq!(g.modules.len(), 3);
    assert_eq!(edges(&g), ["a->b", "b->c", "c->a"]);
    let t = g.tangles();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].members, ["a", "b", "c"]);
    assert_eq!(t[0].cycles, [vec!["a", "b", "c", "a"]]);
    let site = &g.edges[&("b".to_string(), "c".to_string())][0];
    assert_eq!((site.file.file_name().unwrap().to_str().unwrap(), site.line), ("b.rs", 3));
    assert_eq!(site.path, "crate::c::C");
    // `crate::A` goes through the root's `pub use a::A`.
    assert_eq!(g.edges[&("c".to_string(), "a".to_string())][0].path, "crate::A");
    let report = report(&g, &f.0);
    assert!(report.contains("a -> b -> c -> a"), "{report}");
    assert!(report.contains("b.rs:3  crate::c::C"), "{report}");
}

#[test]
fn acyclic_graph_has_layers() {
    let f = Fixture::new(&[
        ("lib.rs", "mod a; mod b; mod c; mod d;\n"),
        ("a.rs", "use crate::b::X; use crate::c::Y;"),
        ("b.rs", "pub struct X(crate::d::Z);"),
        ("c.rs", "pub struct Y;"),
        ("d.rs", "pub struct Z;"),
    ]);
    let g = f.graph();
    assert!(g.tangles().is_empty());
    let layers: Vec<Vec<String>> = g.layers().iter().map(|l| l.iter().map(|c| c.join("+")).collect()).collect();
    assert_eq!(layers, [vec!["c", "d"], vec!["b"], vec!["a"]]);
    assert!(report(&g, &f.0).contains(": 4 modules, 3 edges: acyclic"));
}

#[test]
fn grouped_uses_and_macro_and_attribute_paths() {
    let f = Fixture::new(&[
        ("lib.rs", "mod a; mod b; mod c; mod d; mod e; mod f;\n"),
        (
            "a.rs",
            "use crate::{\n    b::X,\n    c,\n    d::{self, inner::{Y as Z}},\n};\n\
             fn f() { let _ = vec![crate::e::make()]; }\n\
             #[derive(Debug)]\n#[some::attr(with = crate::f::T)]\nstruct S;\n",
        ),
        ("b.rs", "pub struct X;"),
        ("c.rs", ""),
        ("d.rs", "pub mod inner { pub struct Y; }"),
        ("e.rs", "pub fn make() {}"),
        ("f.rs", "pub struct T;"),
    ]);
    let g = f.graph();
    assert_eq!(edges(&g), ["a->b", "a->c", "a->d", "a->e", "a->f"]);
    let d = &g.edges[&("a".to_string(), "d".to_string())];
    assert_eq!(
        d.iter().map(|s| (s.line, s.path.as_str())).collect::<Vec<_>>(),
        [(4, "crate::d"), (4, "crate::d::inner::Y")]
    );
    assert_eq!(g.edges[&("a".to_string(), "c".to_string())][0].line, 3);
}

#[test]
fn super_and_self_resolve_from_nested_modules() {
    let f = Fixture::new(&[
        ("lib.rs", "pub mod http;\npub mod store;\npub mod user;\n"),
        ("http/mod.rs", "mod items;\nmod deep;\npub struct State;\n"),
        // super:: to the parent stays inside `http`; super::super:: reaches the root's children.
        (
            "http/items.rs",
            "use super::State;\nuse super::super::store::Store;\nfn f(_: self::Local) {}\nstruct Local;\n",
        ),
        ("http/deep.rs", "mod leaf;\n"),
        ("http/deep/leaf.rs", "fn g() -> super::super::super::user::User { todo!() }\n"),
        ("store.rs", "pub struct Store;\nmod nested {\n    use super::super::user;\n}\n"),
        ("user.rs", "pub struct User;\npub(in crate::user) fn hidden() {}\npub(super) fn vis() {}\n"),
    ]);
    let g = f.graph();
    assert_eq!(edges(&g), ["http->store", "http->user", "store->user"]);
    assert!(g.tangles().is_empty());
    let leaf = &g.edges[&("http".to_string(), "user".to_string())][0];
    assert!(leaf.file.ends_with("http/deep/leaf.rs"), "{leaf:?}");
    assert_eq!(leaf.path, "super::super::super::user::User");
}

#[test]
fn test_only_code_is_ignored() {
    let f = Fixture::new(&[
        ("lib.rs", "mod a;\nmod b;\n#[cfg(test)]\nmod testutil;\n"),
        (
            "a.rs",
            "pub struct A;\n\
             #[cfg(test)]\nmod tests { use crate::b::B; }\n\
             #[cfg(test)]\nmod more;\n\
             #[cfg(all(test, feature = \"x\"))]\nfn helper() -> crate::b::B { todo!() }\n\
             #[test]\nfn t() { crate::b::f(); }\n\
             impl A {\n    #[cfg(test)]\n    fn only_in_tests(&self) -> crate::b::B { todo!() }\n}\n\
             #[cfg(not(test))]\nfn real() {}\n",
        ),
        ("a/more.rs", "use crate::b::B;\n"),
        ("b.rs", "pub struct B;\npub fn f() {}\nuse crate::a::A;\n"),
        ("testutil.rs", "use crate::a::A; use crate::b::B;"),
    ]);
    let g = f.graph();
    assert_eq!(g.modules.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(edges(&g), ["b->a"]);
    assert!(g.tangles().is_empty());
}

#[test]
fn inline_modules_and_nested_files() {
    let f = Fixture::new(&[
        ("lib.rs", "pub mod train;\npub mod data { pub mod split; }\npub mod model;\n"),
        ("train.rs", "pub mod als;\n"),
        ("train/als.rs", "use crate::model::Model;\n"),
        ("data/split.rs", "pub fn split() -> crate::train::als::Als { todo!() }\n"),
        ("model.rs", "pub struct Model; fn x() { crate::data::split::split(); }\n"),
    ]);
    let g = f.graph();
    assert_eq!(edges(&g), ["data->train", "model->data", "train->model"]);
    assert_eq!(g.tangles()[0].cycles, [vec!["data", "train", "model", "data"]]);
}

#[test]
fn lists_every_elementary_cycle() {
    let f = Fixture::new(&[
        ("lib.rs", "mod a; mod b; mod c;\n"),
        ("a.rs", "use crate::b::X; use crate::c::Y;"),
        ("b.rs", "use crate::a::X;"),
        ("c.rs", "use crate::a::X; use crate::b::Y;"),
    ]);
    let t = f.graph().tangles();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].cycles, [vec!["a", "b", "a"], vec!["a", "c", "a"], vec!["a", "c", "b", "a"]]);
}

/// The parser reads every crate of the workspace the command checks.
#[test]
fn reads_the_workspace_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for c in DEFAULT_CRATES.iter().map(|c| root.join(c)).filter(|p| p.is_dir()) {
        let g = module_graph(&c).unwrap();
        assert!(!g.modules.is_empty(), "{}", c.display());
        let _ = report(&g, root);
    }
}

/// The acceptance check: no import cycle between the modules of either
/// server. `cargo xtask layering` prints the cycles and their sites.
#[test]
fn servers_are_acyclic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for c in DEFAULT_CRATES {
        let src = root.join(c);
        assert!(src.is_dir(), "{c} is missing: update DEFAULT_CRATES");
        let g = module_graph(&src).unwrap();
        assert!(g.tangles().is_empty(), "{}", report(&g, root));
    }
}
