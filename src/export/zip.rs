//! A zip archive written entry by entry into a file, each entry streamed
//! from a reader (never a whole entry in memory), deflated (text) or stored
//! (dumps, compressed already). Every entry carries the same fixed time,
//! and deflate at a fixed level gives the same bytes for the same input,
//! so that the same entries give the same archive. Entries or an archive
//! beyond 4 GiB use the Zip64 extensions; smaller ones do not, for the
//! oldest unzip tools.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// 1980-01-01 00:00:00 in MS-DOS time and date: the first day zip can say.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;
const U32_MAX: u64 = u32::MAX as u64;

/// CRC-32 (IEEE), as zip uses it.
pub struct Crc32 {
    table: [u32; 256],
    value: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Self {
            table,
            value: 0xFFFF_FFFF,
        }
    }
}

impl Crc32 {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.value =
                self.table[((self.value ^ u32::from(*b)) & 0xFF) as usize] ^ (self.value >> 8);
        }
    }

    pub fn finish(&self) -> u32 {
        self.value ^ 0xFFFF_FFFF
    }
}

struct Entry {
    name: String,
    crc: u32,
    size: u64,
    compressed: u64,
    deflated: bool,
    offset: u64,
}

/// Entries at least this big use Zip64 (deflate can add a little to data
/// that does not compress).
const ZIP64_FROM: u64 = U32_MAX - (1 << 20);

/// Counts what passes through to a writer.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A zip archive being written.
pub struct ZipWriter<W: Write + Seek> {
    out: W,
    entries: Vec<Entry>,
    offset: u64,
}

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn clamp32(v: u64) -> u32 {
    v.min(U32_MAX) as u32
}

impl<W: Write + Seek> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            entries: vec![],
            offset: 0,
        }
    }

    /// Adds `name` with the `size` bytes `data` gives, deflated if
    /// `deflate` (an entry whose reader gives another length is an error:
    /// the headers say `size`).
    pub fn add(
        &mut self,
        name: &str,
        size: u64,
        data: &mut impl Read,
        deflate: bool,
    ) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad entry name {name:?}"),
            ));
        }
        let zip64 = size >= ZIP64_FROM;
        let mut header = Vec::with_capacity(64 + name.len());
        header.extend(le32(0x0403_4b50));
        header.extend(le16(if zip64 { 45 } else { 20 })); // version needed
        header.extend(le16(1 << 11)); // UTF-8 names
        header.extend(le16(if deflate { 8 } else { 0 }));
        header.extend(le16(DOS_TIME));
        header.extend(le16(DOS_DATE));
        header.extend(le32(0)); // CRC and sizes: written once known
        header.extend(le32(0));
        header.extend(le32(0));
        header.extend(le16(name.len() as u16));
        header.extend(le16(if zip64 { 20 } else { 0 }));
        header.extend(name.as_bytes());
        if zip64 {
            header.extend(le16(1));
            header.extend(le16(16));
            header.extend([0u8; 16]);
        }
        self.out.write_all(&header)?;
        let (crc, copied, compressed) = self.copy(data, deflate)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "{name}: {copied} bytes, not {size}"
            )));
        }
        let end = self.offset + header.len() as u64 + compressed;
        self.out.seek(SeekFrom::Start(self.offset + 14))?;
        self.out.write_all(&le32(crc))?;
        if zip64 {
            self.out.write_all(&le32(u32::MAX))?;
            self.out.write_all(&le32(u32::MAX))?;
            self.out
                .seek(SeekFrom::Start(self.offset + 30 + name.len() as u64 + 4))?;
            self.out.write_all(&size.to_le_bytes())?;
            self.out.write_all(&compressed.to_le_bytes())?;
        } else {
            self.out.write_all(&le32(compressed as u32))?;
            self.out.write_all(&le32(size as u32))?;
        }
        self.out.seek(SeekFrom::Start(end))?;
        self.entries.push(Entry {
            name: name.to_string(),
            crc,
            size,
            compressed,
            deflated: deflate,
            offset: self.offset,
        });
        self.offset = end;
        Ok(())
    }

    /// Copies `data` out (deflated or not): its CRC, its length, and the
    /// bytes written.
    fn copy(&mut self, data: &mut impl Read, deflate: bool) -> io::Result<(u32, u64, u64)> {
        let mut crc = Crc32::default();
        let mut buf = vec![0u8; 1 << 16];
        let mut copied = 0u64;
        let mut counting = Counting {
            inner: &mut self.out,
            bytes: 0,
        };
        let mut pump = |sink: &mut dyn Write| -> io::Result<()> {
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                crc.update(&buf[..n]);
                sink.write_all(&buf[..n])?;
                copied += n as u64;
            }
        };
        if deflate {
            let mut enc =
                flate2::write::DeflateEncoder::new(&mut counting, flate2::Compression::default());
            pump(&mut enc)?;
            // Its last block written here, errors seen (not in a drop).
            enc.finish()?;
        } else {
            pump(&mut counting)?;
        }
        Ok((crc.finish(), copied, counting.bytes))
    }

    /// Writes the central directory; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let start = self.offset;
        let mut dir = Vec::new();
        for e in &self.entries {
            let zip64 = e.size >= ZIP64_FROM || e.offset >= U32_MAX;
            let mut extra = Vec::new();
            if zip64 {
                extra.extend(le16(1));
                extra.extend(le16(24));
                extra.extend(e.size.to_le_bytes());
                extra.extend(e.compressed.to_le_bytes());
                extra.extend(e.offset.to_le_bytes());
            }
            dir.extend(le32(0x0201_4b50));
            dir.extend(le16((3 << 8) | 45)); // made by: Unix, 4.5
            dir.extend(le16(if zip64 { 45 } else { 20 }));
            dir.extend(le16(1 << 11));
            dir.extend(le16(if e.deflated { 8 } else { 0 }));
            dir.extend(le16(DOS_TIME));
            dir.extend(le16(DOS_DATE));
            dir.extend(le32(e.crc));
            dir.extend(le32(if zip64 { u32::MAX } else { e.compressed as u32 }));
            dir.extend(le32(if zip64 { u32::MAX } else { e.size as u32 }));
            dir.extend(le16(e.name.len() as u16));
            dir.extend(le16(extra.len() as u16));
            dir.extend(le16(0)); // comment
            dir.extend(le16(0)); // disk
            dir.extend(le16(0)); // internal attributes
            dir.extend(le32(0o100_644 << 16)); // a regular file, rw-r--r--
            dir.extend(le32(if zip64 { u32::MAX } else { e.offset as u32 }));
            dir.extend(e.name.as_bytes());
            dir.extend(extra);
        }
        self.out.write_all(&dir)?;
        let dir_size = dir.len() as u64;
        let count = self.entries.len() as u64;
        let end = start + dir_size;
        if start >= U32_MAX || count >= 0xFFFF {
            let mut z = Vec::new();
            z.extend(le32(0x0606_4b50));
            z.extend(44u64.to_le_bytes());
            z.extend(le16(45));
            z.extend(le16(45));
            z.extend(le32(0));
            z.extend(le32(0));
            z.extend(count.to_le_bytes());
            z.extend(count.to_le_bytes());
            z.extend(dir_size.to_le_bytes());
            z.extend(start.to_le_bytes());
            z.extend(le32(0x0706_4b50));
            z.extend(le32(0));
            z.extend(end.to_le_bytes());
            z.extend(le32(1));
            self.out.write_all(&z)?;
        }
        let mut eocd = Vec::new();
        eocd.extend(le32(0x0605_4b50));
        eocd.extend(le16(0));
        eocd.extend(le16(0));
        eocd.extend(le16(count.min(0xFFFF) as u16));
        eocd.extend(le16(count.min(0xFFFF) as u16));
        eocd.extend(le32(clamp32(dir_size)));
        eocd.extend(le32(clamp32(start)));
        eocd.extend(le16(0));
        self.out.write_all(&eocd)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_a_known_text() {
        let mut c = Crc32::default();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn the_same_entries_give_the_same_bytes_and_a_wrong_length_is_an_error() {
        let make = || {
            let mut z = ZipWriter::new(std::io::Cursor::new(Vec::new()));
            z.add("README.txt", 5, &mut &b"hello"[..], true).unwrap();
            z.add("data/é.csv", 3, &mut &b"a,b"[..], false).unwrap();
            z.finish().unwrap().into_inner()
        };
        let a = make();
        assert_eq!(a, make());
        assert_eq!(&a[..4], b"PK\x03\x04");
        assert_eq!(&a[a.len() - 22..a.len() - 18], b"PK\x05\x06");
        let mut z = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        assert!(z.add("x", 9, &mut &b"short"[..], false).is_err());
        assert!(z.add("../x", 0, &mut &b""[..], true).is_err());
    }
}
