//! MovieLens-100K as shipped by RecBole on PyPI (installed into the cache on
//! first use, never committed): the counts must be the dataset's.

use edgewise_lab::movielens::{self, OnError};

#[test]
fn ml_100k_has_its_published_counts() {
    let dir = movielens::installed_dir(|m| eprintln!("{m}")).expect("recbole==1.2.1 installs from PyPI");
    let d = movielens::load(&dir, OnError::Stop).expect("the real files parse without a single bad line");
    assert_eq!(d.ratings.len(), 100_000);
    assert_eq!(d.users.len(), 943);
    assert_eq!(d.movies.len(), 1_682);
    assert!(d.skipped.is_empty());
    assert_eq!(d.notes.len(), 1, "one year is repaired from its title: {:?}", d.notes);
    for n in &d.notes {
        println!("note: {n}");
    }
    let rated_users: std::collections::HashSet<u64> = d.ratings.iter().map(|r| r.user).collect();
    assert_eq!(rated_users.len(), 943, "every user has ratings");
    let regions: std::collections::BTreeSet<u8> = d.users.iter().map(|u| u.region).collect();
    assert_eq!(regions, (0..=10).collect(), "ten US postal regions and the non-US one");
    let with_director = d.movies.iter().filter(|m| m.creator != 0).count();
    println!(
        "ML-100K: {} ratings, {} users, {} movies; {} directors cover {with_director} movies",
        d.ratings.len(),
        d.users.len(),
        d.movies.len(),
        d.directors
    );
    assert!(with_director > 1_000, "most movies have a director in the knowledge graph: {with_director}");
}
