//! Persisted last-known-good xDS resources (ours; gRPC has no equivalent): every accepted
//! resource is written to a cache directory, atomically and with a checksum, so that a
//! process that starts while its control plane is unreachable can boot from what it last
//! knew instead of failing.
//!
//! One file per resource, named by a hash of (type URL, resource name). A file holds a
//! magic, a format version, the xDS server URI and node id it came from, the type URL, the
//! name, the version and the resource bytes (the `Any` value as received), then an XXH64
//! checksum of all that. A file that is truncated, corrupt, of another format version, or
//! written for another server, node or resource is *foreign*: it is ignored with a warning,
//! never trusted. Writes go to a temporary file in the same directory, are synced, then
//! renamed over the old file, so a crash leaves either the old or the new file.

use std::io::Write;
use std::path::{Path, PathBuf};

use xds_proto::protobuf::Any;
use xxhash_rust::xxh64::xxh64;

const MAGIC: &[u8; 8] = b"MESHLKG\0";
/// The on-disk format version; a file of another version is ignored.
pub const FORMAT_VERSION: u32 = 1;
const CHECKSUM_SEED: u64 = 0x6d65_7368_6c6b_6701;

/// A resource read back from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResource {
    /// The version it was accepted at.
    pub version: String,
    /// The resource as received.
    pub raw: Any,
    /// The file it came from.
    pub path: PathBuf,
}

/// Why a cache file was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid cache file for this resource (see the module docs).
    #[error("{path}: ignored: {reason}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A cache directory for one xDS server and node.
#[derive(Debug, Clone)]
pub struct LastKnownGood {
    dir: PathBuf,
    server_uri: String,
    node_id: String,
}

impl LastKnownGood {
    /// Uses `dir` (created if missing) for resources from `server_uri` for node `node_id`.
    pub fn open(
        dir: impl Into<PathBuf>,
        server_uri: &str,
        node_id: &str,
    ) -> Result<Self, CacheError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| CacheError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(LastKnownGood {
            dir,
            server_uri: server_uri.to_string(),
            node_id: node_id.to_string(),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, type_url: &str, name: &str) -> PathBuf {
        let key = xxh64(
            format!("{}\n{}\n{type_url}\n{name}", self.server_uri, self.node_id).as_bytes(),
            0,
        );
        self.dir.join(format!("{key:016x}.lkg"))
    }

    /// Writes `raw`, accepted at `version`, atomically.
    pub fn store(
        &self,
        type_url: &str,
        name: &str,
        version: &str,
        raw: &Any,
    ) -> Result<(), CacheError> {
        let path = self.path(type_url, name);
        let mut buf = Vec::with_capacity(raw.value.len() + 256);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for field in [
            self.server_uri.as_bytes(),
            self.node_id.as_bytes(),
            type_url.as_bytes(),
            name.as_bytes(),
            version.as_bytes(),
            raw.type_url.as_bytes(),
            raw.value.as_slice(),
        ] {
            put(&mut buf, field);
        }
        let sum = xxh64(&buf, CHECKSUM_SEED);
        buf.extend_from_slice(&sum.to_le_bytes());
        let io = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Removes a resource the server deleted. A missing file is not an error.
    pub fn remove(&self, type_url: &str, name: &str) -> Result<(), CacheError> {
        let path = self.path(type_url, name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Io { path, source }),
        }
    }

    /// Reads a resource back: `Ok(None)` when there is no file; an error when the file is
    /// unreadable or foreign (the caller logs it and goes on without).
    pub fn load(&self, type_url: &str, name: &str) -> Result<Option<CachedResource>, CacheError> {
        let path = self.path(type_url, name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        let foreign = |reason: &str| CacheError::Foreign {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let body_len = bytes
            .len()
            .checked_sub(8)
            .ok_or_else(|| foreign("truncated"))?;
        let (body, sum) = bytes.split_at(body_len);
        let sum = u64::from_le_bytes(sum.try_into().map_err(|_| foreign("truncated"))?);
        if xxh64(body, CHECKSUM_SEED) != sum {
            return Err(foreign("checksum mismatch (corrupt file)"));
        }
        let mut r = Reader { rest: body };
        if r.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(foreign("not a last-known-good cache file"));
        }
        let format = r
            .take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| foreign("truncated"))?;
        if format != FORMAT_VERSION {
            return Err(foreign(&format!(
                "format version {format}, this build reads {FORMAT_VERSION}"
            )));
        }
        let mut fields = Vec::with_capacity(7);
        for _ in 0..7 {
            fields.push(r.field().ok_or_else(|| foreign("truncated"))?);
        }
        if !r.rest.is_empty() {
            return Err(foreign("trailing bytes"));
        }
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| foreign("not UTF-8"));
        let [server, node, ty, n, version, any_type, value] = fields.as_slice() else {
            return Err(foreign("truncated"));
        };
        if text(server)? != self.server_uri || text(node)? != self.node_id {
            return Err(foreign("written for another xDS server or node"));
        }
        if text(ty)? != type_url || text(n)? != name {
            return Err(foreign("written for another resource"));
        }
        Ok(Some(CachedResource {
            version: text(version)?,
            raw: Any {
                type_url: text(any_type)?,
                value: value.to_vec(),
            },
            path,
        }))
    }
}

fn put(buf: &mut Vec<u8>, field: &[u8]) {
    buf.extend_from_slice(&(field.len() as u64).to_le_bytes());
    buf.extend_from_slice(field);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let len = u64::from_le_bytes(self.take(8)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TY: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

    fn any(v: &[u8]) -> Any {
        Any {
            type_url: TY.into(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn store_load_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let c = LastKnownGood::open(dir.path().join("lkg"), "127.0.0.1:1", "node-a").unwrap();
        assert!(c.load(TY, "c1").unwrap().is_none());
        c.store(TY, "c1", "v1", &any(b"one")).unwrap();
        c.store(TY, "c1", "v2", &any(b"two")).unwrap();
        let got = c.load(TY, "c1").unwrap().unwrap();
        assert_eq!((got.version.as_str(), got.raw), ("v2", any(b"two")));
        assert!(c.load(TY, "c2").unwrap().is_none());
        c.remove(TY, "c1").unwrap();
        assert!(c.load(TY, "c1").unwrap().is_none());
        c.remove(TY, "c1").unwrap();
        // No temporary files are left behind.
        let left: Vec<_> = std::fs::read_dir(c.dir()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_ignored_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let c = LastKnownGood::open(dir.path(), "127.0.0.1:1", "node-a").unwrap();
        c.store(TY, "c1", "v1", &any(b"payload")).unwrap();
        let path = c.path(TY, "c1");
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[30] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let e = c.load(TY, "c1").unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");

        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(c.load(TY, "c1").is_err());
        std::fs::write(&path, b"").unwrap();
        assert!(
            c.load(TY, "c1")
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );

        // Another node's cache in the same directory is never read as ours.
        let other = LastKnownGood::open(dir.path(), "127.0.0.1:1", "node-b").unwrap();
        other.store(TY, "c1", "v9", &any(b"theirs")).unwrap();
        std::fs::copy(other.path(TY, "c1"), &path).unwrap();
        let e = c.load(TY, "c1").unwrap_err().to_string();
        assert!(e.contains("another xDS server or node"), "{e}");

        // A file of another format version.
        let mut v2 = good.clone();
        v2[8] = 2;
        let n = v2.len() - 8;
        let sum = xxh64(&v2[..n], CHECKSUM_SEED).to_le_bytes();
        v2[n..].copy_from_slice(&sum);
        std::fs::write(&path, &v2).unwrap();
        let e = c.load(TY, "c1").unwrap_err().to_string();
        assert!(e.contains("format version 2"), "{e}");
    }
}
