//! Appending a temporary comment to a tracked file and putting it back.
//!
//! cache-test and bench both edit a source file to prove what a one-line change
//! rebuilds; whatever happens, the file must come back byte for byte with its
//! times, and an edit someone made meanwhile must never be thrown away.

use std::fs::{self, FileTimes};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// How a touched file came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// Original bytes and times.
    Exact,
    /// Someone edited the file meanwhile: only our comment was taken out.
    OurLineRemoved,
    /// Our comment is no longer there (or the file and its folder are gone):
    /// the file was left as it is.
    LeftAlone,
}

/// What to append to `original` so that `comment` stands on a line of its own.
pub fn appended_bytes(original: &[u8], comment: &str) -> Vec<u8> {
    let mut appended = Vec::new();
    if !original.is_empty() && !original.ends_with(b"\n") {
        appended.push(b'\n');
    }
    appended.extend_from_slice(comment.as_bytes());
    appended
}

/// Where `needle` last occurs in `hay` (our comment was appended at the end).
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The file's times before the touch; `accessed` is put back when known.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub accessed: Option<SystemTime>,
    pub modified: SystemTime,
}

/// Puts `path` back to `original` (which had `appended` added to it):
/// exact bytes and times when the file holds only our change (or is missing),
/// our comment alone removed when someone else edited it too.
pub fn restore(path: &Path, original: &[u8], appended: &[u8], times: Times) -> Result<Restored> {
    let current = match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let touched = [original, appended].concat();
    let how = match current {
        // Edited while we ran: never throw someone's edit away.
        Some(bytes) if bytes != touched && bytes != original => match rfind(&bytes, appended) {
            Some(at) => {
                let kept = [&bytes[..at], &bytes[at + appended.len()..]].concat();
                fs::write(path, kept).with_context(|| format!("restoring {}", path.display()))?;
                Restored::OurLineRemoved
            }
            None => Restored::LeftAlone,
        },
        None if !path.parent().is_some_and(Path::is_dir) => Restored::LeftAlone,
        current => {
            // In place (same inode and permissions), then the times: editors,
            // make and BuildKit's incremental context transfer look at mtime.
            if current.as_deref() != Some(original) {
                fs::write(path, original).with_context(|| format!("restoring {}", path.display()))?;
            }
            set_times(path, times)?;
            Restored::Exact
        }
    };
    Ok(how)
}

pub fn set_times(path: &Path, times: Times) -> Result<()> {
    let mut file_times = FileTimes::new().set_modified(times.modified);
    if let Some(accessed) = times.accessed {
        file_times = file_times.set_accessed(accessed);
    }
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_times(file_times))
        .with_context(|| format!("restoring the times of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn comments_go_on_a_line_of_their_own() {
        assert_eq!(appended_bytes(b"x = 1", "# m\n"), b"\n# m\n");
        assert_eq!(appended_bytes(b"x = 1\n", "# m\n"), b"# m\n");
        assert_eq!(appended_bytes(b"", "# m\n"), b"# m\n");
    }

    #[test]
    fn restores_exactly_or_removes_only_our_line() {
        let dir = std::env::temp_dir().join(format!("file-touch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cli.py");
        let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let times = Times { accessed: None, modified: old };
        let appended = appended_bytes(b"a\n", "# ours\n");

        fs::write(&path, b"a\n# ours\n").unwrap();
        assert_eq!(restore(&path, b"a\n", &appended, times).unwrap(), Restored::Exact);
        assert_eq!(fs::read(&path).unwrap(), b"a\n");
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), old);

        fs::write(&path, b"a\n# ours\nb\n").unwrap();
        assert_eq!(restore(&path, b"a\n", &appended, times).unwrap(), Restored::OurLineRemoved);
        assert_eq!(fs::read(&path).unwrap(), b"a\nb\n");

        fs::write(&path, b"someone else's\n").unwrap();
        assert_eq!(restore(&path, b"a\n", &appended, times).unwrap(), Restored::LeftAlone);
        assert_eq!(fs::read(&path).unwrap(), b"someone else's\n");

        fs::remove_file(&path).unwrap();
        assert_eq!(restore(&path, b"a\n", &appended, times).unwrap(), Restored::Exact);
        assert_eq!(fs::read(&path).unwrap(), b"a\n");
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(restore(&path, b"a\n", &appended, times).unwrap(), Restored::LeftAlone);
    }
}
