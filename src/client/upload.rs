//! Upload bodies read from a file as they are sent: an upload of any size holds a chunk or two
//! in memory, never the file. Each attempt (retries) reads the file again from the start and
//! hashes what it sends, so the MD5 W&B will report is known without a second pass.

use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use md5::{Digest as _, Md5};

/// Bytes per read of an upload's file.
const CHUNK: usize = 1 << 20;

/// A file's first `len` bytes as a re-sendable request body.
#[derive(Clone, Debug)]
pub(crate) struct FileBody {
    file: Arc<std::fs::File>,
    len: u64,
    /// MD5 of the bytes of the last attempt that read them all.
    digest: Arc<Mutex<Option<[u8; 16]>>>,
}

impl FileBody {
    pub(crate) fn new(file: Arc<std::fs::File>, len: u64) -> Self {
        // An empty body is never polled for a chunk: its digest is known now.
        let empty = (len == 0).then(|| Md5::digest(b"").into());
        FileBody {
            file,
            len,
            digest: Arc::new(Mutex::new(empty)),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The MD5 of what the last complete attempt sent.
    pub(crate) fn digest(&self) -> Option<[u8; 16]> {
        *self.digest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh body for one attempt.
    pub(crate) fn body(&self) -> reqwest::Body {
        struct State {
            file: Arc<std::fs::File>,
            len: u64,
            pos: u64,
            hasher: Option<Md5>,
            digest: Arc<Mutex<Option<[u8; 16]>>>,
        }
        let state = State {
            file: Arc::clone(&self.file),
            len: self.len,
            pos: 0,
            hasher: Some(Md5::new()),
            digest: Arc::clone(&self.digest),
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            if state.pos >= state.len {
                return None;
            }
            let want = usize::try_from(state.len - state.pos)
                .unwrap_or(usize::MAX)
                .min(CHUNK);
            let file = Arc::clone(&state.file);
            let pos = state.pos;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, pos).map(|()| buf)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok(buf) => {
                    if let Some(hasher) = state.hasher.as_mut() {
                        hasher.update(&buf);
                    }
                    state.pos += buf.len() as u64;
                    if state.pos >= state.len
                        && let Some(hasher) = state.hasher.take()
                    {
                        // Now, with the last chunk: the HTTP client stops polling the body
                        // once it has sent Content-Length bytes.
                        *state.digest.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(hasher.finalize().into());
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), state))
                }
                Err(e) => {
                    // The body ends with the error; the attempt fails (and may be retried).
                    state.pos = state.len;
                    state.hasher = None;
                    Some((Err(e), state))
                }
            }
        });
        reqwest::Body::wrap_stream(stream)
    }
}
