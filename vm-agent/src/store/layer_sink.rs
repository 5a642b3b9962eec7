//! A layer unpacked while its bytes arrive: a pull or a load hands each chunk to the sink as it
//! writes the blob, and a thread of the sink's own unpacks them into a staging directory at the same
//! time, so a layer is read, hashed and written once instead of being stored first and read back.
//!
//! The producer never waits on the unpacker's success: if the unpack fails (a hostile or truncated
//! tar, something that is not a layer at all) the sink swallows the rest and reports the failure
//! at `finish`. Nothing it unpacked gets a name in the store until [`super::Store::commit_staged`]
//! checks its diff id; a sink or staged layer dropped unused removes its directory.

use std::fs;
use std::io::{self, BufRead, Read};
use std::path::PathBuf;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::unpack::{self, UnpackError, UnpackedLayer};

/// Chunks in flight between the producer and the unpacker (each up to a network read or 256 KiB).
const QUEUE: usize = 32;

/// The receiving end, read as a byte stream.
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        let _ = self.current.split_to(n.min(self.current.len()));
    }
}

/// A layer being unpacked from chunks handed to it.
#[derive(Debug)]
pub struct LayerSink {
    tx: Option<mpsc::Sender<Bytes>>,
    thread: Option<JoinHandle<Result<UnpackedLayer, UnpackError>>>,
    stage: PathBuf,
}

/// A layer unpacked into staging, not yet in the store.
#[derive(Debug)]
pub struct StagedLayer {
    pub(super) stage: PathBuf,
    pub(super) unpacked: UnpackedLayer,
}

impl StagedLayer {
    /// The diff id of what was unpacked.
    pub fn diff_id(&self) -> &super::digest::Digest {
        &self.unpacked.diff_id
    }
}

impl Drop for StagedLayer {
    fn drop(&mut self) {
        if self.stage.exists() {
            let _ = fs::remove_dir_all(&self.stage);
        }
    }
}

impl LayerSink {
    /// Starts unpacking into `stage/diff` (`stage` must not exist yet).
    pub(super) fn start(stage: PathBuf) -> io::Result<Self> {
        let diff = stage.join("diff");
        fs::create_dir_all(&diff)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let reader = ChunkReader { rx, current: Bytes::new() };
        let spawned = std::thread::Builder::new().name("layer-unpack".into()).spawn(move || {
            let mut reader = reader;
            let result = unpack::unpack_layer(&mut reader, &diff);
            // Whatever the outcome, take the rest so the producer never blocks on a full queue.
            while reader.rx.blocking_recv().is_some() {}
            result
        });
        match spawned {
            Ok(thread) => Ok(Self { tx: Some(tx), thread: Some(thread), stage }),
            Err(e) => {
                let _ = fs::remove_dir_all(&stage);
                Err(e)
            }
        }
    }

    /// Hands over the next chunk, waiting while the unpacker is behind (from async code).
    pub async fn send(&self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(chunk).await;
        }
    }

    /// Hands over the next chunk from a blocking thread (never from async code).
    pub fn send_blocking(&self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            let _ = tx.blocking_send(chunk);
        }
    }

    /// Ends the stream and waits for the unpacker: the staged layer, or why it could not be unpacked.
    pub fn finish(mut self) -> Result<StagedLayer, UnpackError> {
        self.tx = None;
        let result = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(UnpackError::Archive(io::Error::other("the layer unpacker stopped"))),
        };
        let stage = std::mem::take(&mut self.stage);
        match result {
            Ok(unpacked) => Ok(StagedLayer { stage, unpacked }),
            Err(e) => {
                let _ = fs::remove_dir_all(&stage);
                Err(e)
            }
        }
    }
}

impl Drop for LayerSink {
    /// An abandoned sink (a failed download, an archive entry that was no layer): the unpacker sees
    /// the end of its stream, and its directory is removed once it stopped, without making the
    /// dropping task (possibly async) wait for it.
    fn drop(&mut self) {
        self.tx = None;
        let (thread, stage) = (self.thread.take(), std::mem::take(&mut self.stage));
        if stage.as_os_str().is_empty() {
            return;
        }
        let discard = move || {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
            let _ = fs::remove_dir_all(&stage);
        };
        if let Err(e) = std::thread::Builder::new().name("layer-discard".into()).spawn(discard) {
            tracing::warn!(error = %e, "could not discard an unused layer stage; the next start removes it");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::super::digest::Digest;
    use super::super::{Store, StoreError};
    use super::*;

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        for (path, data) in [("etc/hostname", &b"skiff\n"[..]), ("usr/lib/big.bin", &big[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append_data(&mut h, path, data).unwrap_or_else(|e| panic!("{e}"));
        }
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn feed(sink: &LayerSink, bytes: &[u8]) {
        for chunk in bytes.chunks(100_000) {
            sink.send_blocking(Bytes::copy_from_slice(chunk));
        }
    }

    fn staging_is_empty(root: &Path) -> bool {
        fs::read_dir(root.join("tmp")).map(|d| d.count() == 0).unwrap_or(true)
    }

    #[test]
    fn a_layer_fed_in_chunks_is_unpacked_then_named_only_under_the_expected_diff_id() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap_or_else(|e| panic!("{e}"));
        let tar = layer_tar();
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap_or_else(|e| panic!("{e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));

        let sink = store.layer_sink().unwrap_or_else(|e| panic!("{e}"));
        feed(&sink, &gz);
        let staged = sink.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(staged.diff_id(), &diff_id);
        let wrong = Digest::of(b"another layer");
        let refused = store.commit_staged(staged, Some(&wrong));
        assert!(matches!(refused, Err(StoreError::DigestMismatch { .. })), "{refused:?}");
        assert!(store.layer(&diff_id).is_none() && staging_is_empty(&root));

        let sink = store.layer_sink().unwrap_or_else(|e| panic!("{e}"));
        feed(&sink, &gz);
        let staged = sink.finish().unwrap_or_else(|e| panic!("{e}"));
        let (meta, compression) = store.commit_staged(staged, Some(&diff_id)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(compression, super::super::compression::Compression::Gzip);
        assert_eq!(meta.size, 6 + 3 * 1024 * 1024);
        let diff = store.layer_diff_dir(&diff_id);
        assert_eq!(fs::read(diff.join("etc/hostname")).unwrap_or_default(), b"skiff\n");
        assert_eq!(fs::metadata(diff.join("usr/lib/big.bin")).map(|m| m.len()).unwrap_or(0), 3 * 1024 * 1024);
        assert!(staging_is_empty(&root));
    }

    #[test]
    fn garbage_and_abandoned_streams_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap_or_else(|e| panic!("{e}"));
        // Not a tar: the producer is never blocked, the failure comes at the end.
        let sink = store.layer_sink().unwrap_or_else(|e| panic!("{e}"));
        feed(&sink, &vec![0x5a; 8 * 1024 * 1024]);
        assert!(sink.finish().is_err());
        assert!(staging_is_empty(&root));
        // Half a layer, then the download fails: the sink is dropped and its stage goes away.
        let tar = layer_tar();
        let sink = store.layer_sink().unwrap_or_else(|e| panic!("{e}"));
        feed(&sink, &tar[..tar.len() / 2]);
        drop(sink);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !staging_is_empty(&root) {
            assert!(Instant::now() < deadline, "an abandoned layer's stage was never removed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
