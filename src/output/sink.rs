//! Where records go: stdout or a file, one JSON object per line.
//!
//! Lines are serialized into an in-memory buffer and written whole, so the
//! output holds only complete lines: a reader never sees a partial record.
//! Files are opened for append and never truncated, except that a write which
//! fails part way is cut back to the last complete line; [`Sink::reopen`] starts
//! writing to a fresh file at the same path (after logrotate moved the old one).
//! A channel sink ([`Sink::channel`]) hands each flushed buffer of whole lines to
//! another thread (the daemon's output thread), which appends them with
//! [`Sink::write_lines`].

use super::Record;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Buffered bytes that trigger a write: large enough to amortize syscalls,
/// small enough that a crash loses little.
pub const SINK_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open output {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot write output {path}: {source}")]
    Write { path: String, source: io::Error },
}

enum Target {
    Stdout(io::Stdout),
    File {
        path: PathBuf,
        file: File,
    },
    Channel(crossbeam_channel::Sender<Vec<u8>>),
    /// Records kept as values (tests and in-process evaluation), never serialized.
    Memory(Vec<Value>),
}

pub struct Sink {
    target: Target,
    buf: Vec<u8>,
    /// Records written (complete lines handed to the OS or buffered).
    pub records: u64,
}

impl Sink {
    pub fn stdout() -> Sink {
        Sink {
            target: Target::Stdout(io::stdout()),
            buf: Vec::with_capacity(SINK_BUFFER_BYTES * 2),
            records: 0,
        }
    }

    pub fn file(path: &Path) -> Result<Sink, SinkError> {
        let file = open_append(path)?;
        Ok(Sink {
            target: Target::File {
                path: path.to_path_buf(),
                file,
            },
            buf: Vec::with_capacity(SINK_BUFFER_BYTES * 2),
            records: 0,
        })
    }

    /// A sink whose flushes send the buffered lines to `tx` (blocking while
    /// the channel is full: the receiver is the output thread, not capture).
    pub fn channel(tx: crossbeam_channel::Sender<Vec<u8>>) -> Sink {
        Sink {
            target: Target::Channel(tx),
            buf: Vec::with_capacity(SINK_BUFFER_BYTES * 2),
            records: 0,
        }
    }

    /// A sink that keeps the records in memory as values (for in-process
    /// evaluation: no serialization); [`Sink::take_records`] hands them over.
    pub fn memory() -> Sink {
        Sink {
            target: Target::Memory(Vec::new()),
            buf: Vec::new(),
            records: 0,
        }
    }

    /// The records a memory sink holds (empty for other sinks).
    pub fn take_records(&mut self) -> Vec<Value> {
        match &mut self.target {
            Target::Memory(v) => std::mem::take(v),
            _ => Vec::new(),
        }
    }

    /// Appends complete lines (each ending in `\n`) written elsewhere, e.g.
    /// by a channel sink; counts them as records.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        if let Target::Memory(v) = &mut self.target {
            // Lines this process wrote itself: each is one JSON record.
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(value) = serde_json::from_slice(line) {
                    v.push(value);
                    self.records += 1;
                }
            }
            return Ok(());
        }
        self.records += lines.iter().filter(|&&b| b == b'\n').count() as u64;
        self.buf.extend_from_slice(lines);
        if self.buf.len() >= SINK_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub fn write(&mut self, record: &Value) -> Result<(), SinkError> {
        if let Target::Memory(v) = &mut self.target {
            v.push(record.clone());
            self.records += 1;
            return Ok(());
        }
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, record);
        self.buf.push(b'\n');
        self.records += 1;
        if self.buf.len() >= SINK_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes a record built with [`Record`] (serialized straight into the buffer).
    pub fn write_record(&mut self, record: &Record) -> Result<(), SinkError> {
        if let Target::Memory(v) = &mut self.target {
            v.push(record.to_value());
            self.records += 1;
            return Ok(());
        }
        record.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.records += 1;
        if self.buf.len() >= SINK_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = match &mut self.target {
            Target::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(&self.buf).and_then(|_| lock.flush())
            }
            Target::File { file, .. } => write_whole(file, &self.buf),
            Target::Memory(_) => Ok(()),
            Target::Channel(tx) => {
                let lines = std::mem::replace(&mut self.buf, Vec::with_capacity(SINK_BUFFER_BYTES));
                tx.send(lines).map_err(|_| {
                    io::Error::new(io::ErrorKind::BrokenPipe, "output thread has stopped")
                })
            }
        };
        self.buf.clear();
        res.map_err(|source| SinkError::Write {
            path: self.path_name(),
            source,
        })
    }

    /// Flushes, then reopens the output file at its path (no-op for stdout).
    pub fn reopen(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        if let Target::File { path, file } = &mut self.target {
            *file = open_append(path)?;
        }
        Ok(())
    }

    fn path_name(&self) -> String {
        match &self.target {
            Target::Stdout(_) => "stdout".into(),
            Target::Channel(_) => "output channel".into(),
            Target::Memory(_) => "memory".into(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Appends `buf` (whole lines) to `file`, or nothing: when the write fails part
/// way (disk full, quota, I/O error), the file is cut back to its length before
/// the write, so it never ends in a partial line.
fn write_whole(file: &mut File, buf: &[u8]) -> io::Result<()> {
    let before = file.metadata()?.len();
    file.write_all(buf).inspect_err(|_| {
        // Best effort: if even this fails, the write error is still reported.
        let _ = file.set_len(before);
    })
}

fn open_append(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_whole_lines_and_reopens() {
        let dir = std::env::temp_dir().join(format!("nightjar-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.json");
        let mut s = Sink::file(&path).unwrap();
        s.write(&serde_json::json!({"a": 1})).unwrap();
        s.flush().unwrap();
        std::fs::rename(&path, dir.join("old.json")).unwrap();
        s.write(&serde_json::json!({"a": 2})).unwrap();
        s.reopen().unwrap();
        s.write(&serde_json::json!({"a": 3})).unwrap();
        s.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("old.json")).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":3}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_memory_sink_keeps_every_kind_of_write() {
        let mut s = Sink::memory();
        s.write(&serde_json::json!({"a": 1})).unwrap();
        let mut r = Record::new("nightjar.flow", 0);
        r.put("b", 2);
        s.write_record(&r).unwrap();
        s.write_lines(b"{\"c\":3}\n{\"d\":4}\n").unwrap();
        s.flush().unwrap();
        let got = s.take_records();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0]["a"], 1);
        assert_eq!(got[1]["b"], 2);
        assert_eq!(
            (got[2]["c"].clone(), got[3]["d"].clone()),
            (3.into(), 4.into())
        );
    }
}
