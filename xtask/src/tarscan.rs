//! Streams through a `docker save` archive (a tar of layer tars) and finds files
//! with given bytes, without writing anything to disk: the GPU image is ~5 GB,
//! and unpacking it twice to look for a 200 kB CA bundle is not worth 10 GB.

use std::io::{self, Read};

use anyhow::{bail, Context, Result};

const BLOCK: usize = 512;

/// One tar member's header, as far as we need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    /// `b'0'` (or NUL) for a regular file, `b'5'` for a directory, ...
    pub kind: u8,
}

impl Entry {
    fn is_file(&self) -> bool {
        self.kind == b'0' || self.kind == 0
    }
}

/// Calls `visit` for each member of the tar stream `reader`, with a reader over
/// its data; whatever `visit` leaves unread is skipped. GNU long names (`L`) and
/// PAX `path=` records (`x`) name the member that follows them.
pub fn for_each_entry<R: Read>(reader: &mut R, mut visit: impl FnMut(&Entry, &mut dyn Read) -> Result<()>) -> Result<()> {
    let mut long_name: Option<String> = None;
    loop {
        let mut header = [0u8; BLOCK];
        if !read_block(reader, &mut header)? || header.iter().all(|b| *b == 0) {
            return Ok(()); // end of archive (two zero blocks, or a truncated end)
        }
        let size = parse_size(&header[124..136]).context("a tar header with an unreadable size")?;
        let kind = header[156];
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut data = reader.by_ref().take(padded);
        match kind {
            b'L' | b'x' => {
                let mut bytes = Vec::new();
                (&mut data).take(size).read_to_end(&mut bytes)?;
                long_name = if kind == b'L' { Some(c_string(&bytes)) } else { pax_path(&bytes).or(long_name) };
            }
            _ => {
                let name = long_name.take().unwrap_or_else(|| header_name(&header));
                let entry = Entry { name, size, kind };
                visit(&entry, &mut (&mut data).take(size))?;
            }
        }
        io::copy(&mut data, &mut io::sink())?; // the rest of the data and its padding
    }
}

/// For each needle, `<layer>:<path>` of every file in any layer tar inside the
/// `docker save` stream `archive` whose bytes equal it (one pass for all needles).
pub fn find_in_layers<R: Read>(archive: &mut R, needles: &[&[u8]]) -> Result<Vec<Vec<String>>> {
    let mut found = vec![Vec::new(); needles.len()];
    for_each_entry(archive, |outer, data| {
        // Legacy saves name layers `<id>/layer.tar`, OCI ones `blobs/sha256/<digest>`;
        // either way a layer is a member that is itself a tar: sniff its magic.
        if !outer.is_file() || outer.size < BLOCK as u64 {
            return Ok(());
        }
        let mut first = [0u8; BLOCK];
        if !read_block(data, &mut first)? || &first[257..262] != b"ustar" {
            return Ok(());
        }
        let mut layer = io::Cursor::new(first).chain(data);
        for_each_entry(&mut layer, |inner, bytes| {
            if !inner.is_file() || !needles.iter().any(|n| n.len() as u64 == inner.size) {
                return Ok(());
            }
            let mut content = Vec::with_capacity(inner.size as usize);
            bytes.read_to_end(&mut content)?;
            for (i, needle) in needles.iter().enumerate() {
                if content == *needle {
                    found[i].push(format!("{}:{}", outer.name, inner.name));
                }
            }
            Ok(())
        })
    })?;
    Ok(found)
}

/// Fills `block`; false at a clean end of stream.
fn read_block<R: Read + ?Sized>(reader: &mut R, block: &mut [u8; BLOCK]) -> Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        let n = reader.read(&mut block[filled..])?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            bail!("the tar stream ends inside a header");
        }
        filled += n;
    }
    Ok(true)
}

/// Octal, NUL/space padded; or base-256 when the high bit is set (GNU, > 8 GB).
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        return Some(field[1..].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
    }
    let text: String = field.iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn c_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.split(|b| *b == 0).next().unwrap_or_default()).to_string()
}

/// ustar: `prefix/name`.
fn header_name(header: &[u8; BLOCK]) -> String {
    let name = c_string(&header[0..100]);
    let prefix = if &header[257..262] == b"ustar" { c_string(&header[345..500]) } else { String::new() };
    if prefix.is_empty() { name } else { format!("{prefix}/{name}") }
}

/// The `path=` record of a PAX extended header (`"<len> path=<value>\n"` records).
fn pax_path(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .find_map(|record| record.split_once(' ').and_then(|(_, kv)| kv.strip_prefix("path=")).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ustar writer for the tests.
    fn tar(members: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in members {
            let mut header = [0u8; BLOCK];
            header[..name.len()].copy_from_slice(name.as_bytes());
            header[100..107].copy_from_slice(b"0000644");
            let size = format!("{:011o}", data.len());
            header[124..135].copy_from_slice(size.as_bytes());
            header[156] = *kind;
            header[257..263].copy_from_slice(b"ustar\0");
            header[263..265].copy_from_slice(b"00");
            header[148..156].copy_from_slice(b"        ");
            let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
            header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    #[test]
    fn finds_a_file_in_any_layer_even_if_a_later_layer_deletes_it() {
        let secret = b"-----BEGIN CERTIFICATE-----\nsecret\n".as_slice();
        let layer1 = tar(&[("etc/", b'5', b""), ("etc/ca.pem", b'0', secret), ("etc/other", b'0', b"same size but not it!!!!!!!!!!!!!")]);
        let layer2 = tar(&[("etc/.wh.ca.pem", b'0', b"")]);
        let archive = tar(&[
            ("manifest.json", b'0', b"[]"),
            ("aaa/layer.tar", b'0', &layer1),
            ("blobs/sha256/bbb", b'0', &layer2),
        ]);
        let found = find_in_layers(&mut archive.as_slice(), &[secret, b"absent", b""]).unwrap();
        assert_eq!(found[0], ["aaa/layer.tar:etc/ca.pem"]);
        assert!(found[1].is_empty());
        assert_eq!(found[2], ["blobs/sha256/bbb:etc/.wh.ca.pem"]);
    }

    #[test]
    fn long_names_come_from_gnu_and_pax_headers() {
        let long = format!("{}/file.txt", "d".repeat(120));
        let pax = format!("{} path={long}\n", long.len() + 12);
        let archive = tar(&[("././@LongLink", b'L', long.as_bytes()), ("short", b'0', b"x"), ("pax", b'x', pax.as_bytes()), ("s2", b'0', b"y")]);
        let mut names = Vec::new();
        for_each_entry(&mut archive.as_slice(), |e, _| {
            names.push(e.name.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(names, [long.clone(), long]);
    }

    #[test]
    fn sizes_are_octal_or_base256() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(parse_size(b"           \0"), Some(0));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 0x02;
        big[10] = 0x01;
        assert_eq!(parse_size(&big), Some(0x0102));
    }
}
