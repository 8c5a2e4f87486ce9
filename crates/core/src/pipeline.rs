//! The byte pipes: the archive writer (source → tar → compression, gzip or zstd → encrypt
//! → a writer) and the archive reader (stored bytes → SHA-256 check → decrypt →
//! decompress → safe extraction), with their stage threads, hashing and staging folders.
//! The operations that drive them, backup and restore, are in [`crate::ops`].

pub mod archive;
pub mod compress;
pub mod decompress;
pub mod extract;
pub mod hashing;
pub mod index;
pub mod ranged;
pub mod read;
pub mod stage;
pub mod staging;

use std::io::{self, Read};

use bytes::{Buf as _, Bytes};
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::destination::ObjectStream;
use crate::error::Error;

/// A blocking reader over an object's chunks, for the CPU-bound restore pipe.
///
/// The chunks are pulled by a task on the async runtime into a small bounded queue, so
/// memory stays flat; call [`ObjectReader::new`] from within the runtime.
pub struct ObjectReader {
    rx: mpsc::Receiver<crate::Result<Bytes>>,
    current: Bytes,
}

impl ObjectReader {
    /// Starts pulling `object`'s chunks.
    pub fn new(object: ObjectStream) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let mut chunks = object.chunks;
        tokio::spawn(async move {
            while let Some(item) = chunks.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other::<Error>(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
