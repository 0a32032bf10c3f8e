//! gen-logs: deterministic, realistic access logs for benchmarks and tests
//! (`supervisor gen-logs DIR --files N --lines M --distinct K --seed S`).
//!
//! Lines are nginx/Apache "combined" format, ~150 bytes each. Clients come from a pool of K
//! keys: 98% canonical IPv4 addresses, 2% IPv6 (byte-string keys); each line picks a client
//! half the time uniformly and half the time from a steep power law (a few clients are busy,
//! as in real traffic); 5% of lines carry an `X-Forwarded-For` style `client, proxy` prefix.
//! The same options always produce the same bytes (PCG64 seeded from `--seed` and the file index).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Number of files (`access-000.log`, `access-001.log`, ...).
    pub files: usize,
    /// Lines per file.
    pub lines: u64,
    /// Size of the client pool (distinct keys that can appear), at least 1.
    pub distinct: u64,
    /// Random seed.
    pub seed: u64,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The client pool was empty.
    #[error("--distinct must be at least 1")]
    NoClients,
    /// The client pool was larger than the addresses it is drawn from.
    #[error("--distinct must be at most {max}", max = u64::from(u32::MAX))]
    TooManyClients,
    /// Creating or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why (in the message itself, not a `source`, so an error chain does not print it twice).
        error: io::Error,
    },
}

const METHODS: [&str; 4] = ["GET", "GET", "GET", "POST"];
const PAGES: [&str; 8] = [
    "/",
    "/index.html",
    "/api/v1/items",
    "/api/v1/users",
    "/static/app.js",
    "/static/style.css",
    "/images/logo.png",
    "/search",
];
const STATUSES: [u16; 8] = [200, 200, 200, 200, 304, 301, 404, 500];
const AGENTS: [&str; 5] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/119.0",
    "curl/8.4.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "python-requests/2.31.0",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Writes the files into `dir` (created if missing) and returns their paths.
pub fn generate(dir: &Path, options: &GenOptions) -> Result<Vec<PathBuf>, GenError> {
    if options.distinct == 0 {
        return Err(GenError::NoClients);
    }
    if options.distinct > u64::from(u32::MAX) {
        return Err(GenError::TooManyClients);
    }
    fs::create_dir_all(dir).map_err(|error| GenError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    (0..options.files)
        .map(|index| {
            let path = dir.join(format!("access-{index:03}.log"));
            write_file(&path, index as u64, options)
                .map_err(|error| GenError::Io {
                    path: path.clone(),
                    error,
                })
                .map(|()| path)
        })
        .collect()
}

fn write_file(path: &Path, index: u64, options: &GenOptions) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut rng = Pcg64::seed_from_u64(options.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Seconds since 2026-01-01, advancing ~0.1 s a line on average.
    let mut clock = index * 86_400;
    for _ in 0..options.lines {
        clock += u64::from(rng.gen_range(0..2u8));
        let client = pick_client(&mut rng, options.distinct);
        write_client(&mut out, client, options.seed)?;
        if rng.gen_ratio(1, 20) {
            write!(
                out,
                ", 10.0.{}.{}",
                rng.gen_range(0..4),
                rng.gen_range(1..255)
            )?;
        }
        let day = clock / 86_400;
        let status = STATUSES[rng.gen_range(0..STATUSES.len())];
        writeln!(
            out,
            " - - [{:02}/{}/2026:{:02}:{:02}:{:02} +0000] \"{} {}?id={} HTTP/1.1\" {} {} \"{}\" \"{}\"",
            day % 28 + 1,
            MONTHS[(day / 28 % 12) as usize],
            clock / 3600 % 24,
            clock / 60 % 60,
            clock % 60,
            METHODS[rng.gen_range(0..METHODS.len())],
            PAGES[rng.gen_range(0..PAGES.len())],
            rng.gen_range(0..100_000u32),
            status,
            if status == 304 { 0 } else { rng.gen_range(200..60_000u32) },
            if rng.gen_ratio(1, 3) { "https://example.com/" } else { "-" },
            AGENTS[rng.gen_range(0..AGENTS.len())],
        )?;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// A client index: half uniform over the pool, half a steep power law towards index 0.
fn pick_client(rng: &mut Pcg64, distinct: u64) -> u64 {
    let u: f64 = rng.gen();
    let skewed = if rng.gen() { u } else { u.powi(4) };
    ((skewed * distinct as f64) as u64).min(distinct - 1)
}

/// Client `index` of the pool: every 50th an IPv6 address, the others IPv4 addresses spread
/// over the address space by a bijection (distinct indices give distinct addresses).
fn write_client(out: &mut impl Write, index: u64, seed: u64) -> io::Result<()> {
    if index % 50 == 49 {
        return write!(out, "2001:db8:{:x}::{:x}", seed & 0xffff, index);
    }
    let ip = (index as u32).wrapping_mul(0x9E37_79B1) ^ (seed as u32);
    write!(out, "{}", std::net::Ipv4Addr::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64) -> GenOptions {
        GenOptions {
            files: 2,
            lines: 2_000,
            distinct: 300,
            seed,
        }
    }

    fn contents(dir: &Path) -> Vec<Vec<u8>> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names.iter().map(|p| fs::read(p).unwrap()).collect()
    }

    #[test]
    fn same_seed_same_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        generate(a.path(), &options(7)).unwrap();
        generate(b.path(), &options(7)).unwrap();
        generate(c.path(), &options(8)).unwrap();
        let (a, b, c) = (contents(a.path()), contents(b.path()), contents(c.path()));
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a[0], a[1], "files of one run differ");
    }

    #[test]
    fn lines_and_clients_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let paths = generate(dir.path(), &options(1)).unwrap();
        let report = crate::count_dir(dir.path(), &Default::default()).unwrap();
        assert_eq!(paths.len(), 2);
        assert_eq!(report.all.total, 4_000);
        assert_eq!(report.files["access-000.log"].total, 2_000);
        // 4,000 draws from 300 clients, half uniform: nearly all of the pool shows up.
        assert!(
            report.all.ip > 250 && report.all.ip <= 300,
            "{}",
            report.all.ip
        );
        let text = String::from_utf8(fs::read(&paths[0]).unwrap()).unwrap();
        assert!(text.lines().all(|line| line.contains(" - - [")));
        assert!(text.lines().any(|line| line.starts_with("2001:db8:")));
        assert!(text
            .lines()
            .any(|line| line.split(" - -").next().unwrap().contains(", 10.0.")));
    }

    #[test]
    fn bad_options_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let zero = GenOptions {
            distinct: 0,
            ..options(1)
        };
        assert!(matches!(
            generate(dir.path(), &zero),
            Err(GenError::NoClients)
        ));
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = generate(&file.join("sub"), &options(1)).unwrap_err();
        assert!(err.to_string().contains("file/sub"), "{err}");
    }
}
