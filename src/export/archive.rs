//! A package as a zip (deflated): written into any `Write`, or streamed in
//! chunks to an HTTP response while it is being compressed.

use std::io::Write;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::PackageFile;

/// Writes `files` as a zip into `out` without seeking (a stream: sizes go
/// into data descriptors), in the order given, each dated `modified` (the
/// course's last change, so that the same course gives the same bytes).
///
/// # Errors
/// What `out` fails with.
pub fn write_zip<W: Write>(
    files: &[PackageFile],
    modified: DateTime<Utc>,
    out: W,
) -> zip::result::ZipResult<W> {
    let mut zip = ZipWriter::new_stream(out);
    let mut options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    if let Some(time) = zip_time(modified) {
        options = options.last_modified_time(time);
    }
    for f in files {
        zip.start_file(f.path.as_str(), options)?;
        zip.write_all(&f.bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// `time` as a zip (MS-DOS) time, which covers 1980 to 2107 only.
fn zip_time(time: DateTime<Utc>) -> Option<zip::DateTime> {
    let narrow = |v: u32| u8::try_from(v).ok();
    zip::DateTime::from_date_and_time(
        u16::try_from(time.year()).ok()?,
        narrow(time.month())?,
        narrow(time.day())?,
        narrow(time.hour())?,
        narrow(time.minute())?,
        narrow(time.second())?,
    )
    .ok()
}

/// A `Write` that sends what it is given as chunks down a channel (the
/// body of a streamed response); fails once the receiver is gone (the
/// client went away), which ends the zip writing.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Compresses `files` on a blocking thread and returns the zip as a stream
/// of chunks, produced as the client reads them (a bounded channel).
pub fn stream_zip(
    files: Vec<PackageFile>,
    modified: DateTime<Utc>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, mut rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        match write_zip(&files, modified, writer) {
            Ok(mut w) => {
                if let Err(e) = w.flush() {
                    tracing::debug!(error = %e, "export download ended early");
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
