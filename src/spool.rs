//! Message bodies in flight: in memory up to a threshold, then in an unnamed temp file.
//!
//! Owns: bounded memory per message (`spool.memory_limit`), the head copy checks read, and
//! reading the body back in chunks for the relay. Must not: interpret content. The temp
//! file is unlinked at creation (`tempfile::tempfile_in`), so nothing is left on disk after
//! a crash.

use std::io::SeekFrom;
use std::path::PathBuf;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes of the message kept in memory for checks (the header block lives here).
pub const HEAD_LIMIT: usize = 64 * 1024;
const CHUNK: usize = 64 * 1024;

/// One message body.
#[derive(Debug)]
pub struct Spool {
    mem: Vec<u8>,
    head: Vec<u8>,
    file: Option<File>,
    len: u64,
    memory_limit: usize,
    dir: Option<PathBuf>,
}

impl Spool {
    /// An empty spool that spills to `dir` (or the system temp dir) above `memory_limit`.
    pub fn new(memory_limit: usize, dir: Option<PathBuf>) -> Self {
        Spool {
            mem: Vec::new(),
            head: Vec::new(),
            file: None,
            len: 0,
            memory_limit,
            dir,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once the body went to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// The first bytes of the message (up to `HEAD_LIMIT`).
    pub fn head(&self) -> &[u8] {
        if self.file.is_some() {
            &self.head
        } else {
            &self.mem[..self.mem.len().min(HEAD_LIMIT)]
        }
    }

    /// The whole body when it is still in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        self.file.is_none().then_some(&self.mem[..])
    }

    /// Reads a spilled body back into memory (for checks that need all of it at once).
    pub async fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        let mut reader = self.reader().await?;
        while let Some(chunk) = reader.next_chunk().await? {
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }

    /// Appends content.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.len += data.len() as u64;
        if let Some(file) = &mut self.file {
            return file.write_all(data).await;
        }
        self.mem.extend_from_slice(data);
        if self.mem.len() > self.memory_limit {
            let std_file = match &self.dir {
                Some(dir) => tempfile::tempfile_in(dir)?,
                None => tempfile::tempfile()?,
            };
            let mut file = File::from_std(std_file);
            file.write_all(&self.mem).await?;
            self.head = self.mem[..HEAD_LIMIT.min(self.mem.len())].to_vec();
            self.mem = Vec::new();
            self.file = Some(file);
        }
        Ok(())
    }

    /// A reader over the whole body from the start.
    pub async fn reader(&mut self) -> std::io::Result<SpoolReader<'_>> {
        if let Some(file) = &mut self.file {
            file.flush().await?;
            file.seek(SeekFrom::Start(0)).await?;
        }
        Ok(SpoolReader {
            spool: self,
            pos: 0,
            buf: vec![0; CHUNK],
        })
    }
}

/// Reads a spool back in chunks.
pub struct SpoolReader<'a> {
    spool: &'a mut Spool,
    pos: usize,
    buf: Vec<u8>,
}

impl SpoolReader<'_> {
    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<&[u8]>> {
        if let Some(file) = &mut self.spool.file {
            let n = file.read(&mut self.buf).await?;
            return Ok((n > 0).then(|| &self.buf[..n]));
        }
        let mem = &self.spool.mem;
        if self.pos >= mem.len() {
            return Ok(None);
        }
        let end = (self.pos + CHUNK).min(mem.len());
        let chunk = &mem[self.pos..end];
        self.pos = end;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(spool: &mut Spool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = spool.reader().await.expect("reader");
        while let Some(c) = r.next_chunk().await.expect("read") {
            out.extend_from_slice(c);
        }
        out
    }

    #[tokio::test]
    async fn spills_above_limit_and_reads_back() {
        let mut s = Spool::new(100 * 1024, None);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        s.write(&data[..50_000]).await.expect("write");
        assert!(!s.spilled());
        s.write(&data[50_000..]).await.expect("write");
        assert!(s.spilled());
        assert_eq!(s.len(), 300_000);
        assert_eq!(s.head(), &data[..HEAD_LIMIT]);
        assert_eq!(read_all(&mut s).await, data);
        // A second pass (e.g. a retry) reads the same bytes.
        assert_eq!(read_all(&mut s).await, data);
    }

    #[tokio::test]
    async fn small_messages_stay_in_memory() {
        let mut s = Spool::new(1024 * 1024, None);
        s.write(b"Subject: hi\r\n\r\nbody\r\n")
            .await
            .expect("write");
        assert!(!s.spilled());
        assert_eq!(read_all(&mut s).await, b"Subject: hi\r\n\r\nbody\r\n");
    }
}
