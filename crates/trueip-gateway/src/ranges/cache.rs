//! The cache directory: one file per provider, `<provider>.ranges`, whose first line is
//! the metadata (JSON) and the rest the list as published. One file, so one `rename`
//! replaces list and metadata together: a reader sees the old file or the new one, never
//! a mix, and a writer killed mid-write leaves only a temporary file behind.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};
use trueip::providers::Edition;

use super::fetch::MAX_BYTES;

/// The metadata line's format version.
pub(crate) const FORMAT: u32 = 1;
/// The longest metadata line read (a few hundred bytes in practice).
const MAX_META: u64 = 64 << 10;

/// What the cache records about a list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Always [`FORMAT`].
    pub(crate) trueip_ranges: u32,
    /// The provider name (`cloudfront`, ...).
    pub(crate) provider: String,
    /// Where each part came from (Cloudflare's list has two).
    pub(crate) sources: Vec<SourceMeta>,
    /// When it was fetched and accepted, RFC 3339 (UTC).
    pub(crate) fetched_at: String,
    /// The same, in Unix seconds.
    pub(crate) fetched_at_unix: u64,
    /// The provider's edition token (AWS syncToken, Azure changeNumber).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<u64>,
    /// The provider's own date (AWS createDate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) published: Option<String>,
    /// IPv4 prefixes the preset trusts.
    pub(crate) ipv4: usize,
    /// IPv6 prefixes the preset trusts.
    pub(crate) ipv6: usize,
    /// SHA-256 of the list below the metadata line, hex.
    pub(crate) sha256: String,
}

/// One source of a list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SourceMeta {
    /// URL or file path.
    pub(crate) source: String,
    /// SHA-256 of its bytes as received, hex.
    pub(crate) sha256: String,
    /// Its size.
    pub(crate) bytes: u64,
}

impl Meta {
    /// Prefixes in all.
    pub(crate) fn prefixes(&self) -> usize {
        self.ipv4 + self.ipv6
    }

    /// Time since it was fetched: zero if the clock went back a little, and as old as can
    /// be if the file claims a time more than an hour ahead, so that a wrong clock at fetch
    /// time, or a planted date, makes the list stale rather than fresh for ever.
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        let fetched = UNIX_EPOCH + Duration::from_secs(self.fetched_at_unix);
        match now.duration_since(fetched) {
            Ok(age) => age,
            Err(ahead) if ahead.duration() <= Duration::from_secs(3600) => Duration::ZERO,
            Err(_) => Duration::MAX,
        }
    }
}

/// A list read back from the cache, checked.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub(crate) meta: Meta,
    pub(crate) edition: Edition,
}

/// The cache file of `provider` in `dir`.
pub(crate) fn path(dir: &Path, provider: &str) -> PathBuf {
    dir.join(format!("{provider}.ranges"))
}

/// Reads and checks `provider`'s list: `Ok(None)` when there is none; an error when the
/// file is unreadable, not ours, or its checksum or list does not hold.
pub(crate) fn read(dir: &Path, provider: &str) -> Result<Option<Cached>, String> {
    let path = path(dir, provider);
    // Not through a symlink, and not blocking on a FIFO planted in its place.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!("cannot read {}: {e} (is it a symlink?)", path.display()));
        }
    };
    let stat = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !stat.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    owned_safely(&stat, &path)?;
    owned_safely(
        &std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?,
        dir,
    )?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + MAX_META)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |why: String| {
        format!(
            "{} is not a usable cache file: {why} (hint: fetch it again with `trueip ranges update {provider}`)",
            path.display()
        )
    };
    let newline =
        bytes.iter().position(|b| *b == b'\n').ok_or_else(|| bad("no metadata line".into()))?;
    let (line, rest) = bytes.split_at(newline);
    let content = rest.get(1..).unwrap_or_default();
    let meta: Meta = serde_json::from_slice(line).map_err(|e| bad(format!("metadata: {e}")))?;
    if meta.trueip_ranges != FORMAT || meta.provider != provider {
        return Err(bad(format!(
            "format {} for \"{}\", expected format {FORMAT} for \"{provider}\"",
            meta.trueip_ranges, meta.provider
        )));
    }
    if sha256_hex(content) != meta.sha256 {
        return Err(bad("its checksum does not match its list".into()));
    }
    let edition = trueip::providers::edition(provider, content).map_err(|e| bad(e.to_string()))?;
    Ok(Some(Cached { meta, edition }))
}

/// Replaces `provider`'s list: writes a temporary file beside it, flushes it to disk,
/// renames it over the old one and flushes the directory.
pub(crate) fn write(dir: &Path, meta: &Meta, content: &[u8]) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("cannot create the ranges directory {}: {e}", dir.display()))?;
    owned_safely(
        &std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?,
        dir,
    )?;
    remove_stale_temporaries(dir, &meta.provider);
    let target = path(dir, &meta.provider);
    // A name nobody can guess and a file that must not exist yet (no symlink planted in
    // its place is followed): the directory is safe, but the write must not rely on that.
    let mut nonce = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| "cannot draw a random temporary name".to_string())?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let temp = dir.join(format!(".{}.ranges.{}-{nonce}.tmp", meta.provider, std::process::id()));
    let mut line = serde_json::to_vec(meta).map_err(|e| e.to_string())?;
    line.push(b'\n');
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32)
            .open(&temp)?;
        file.write_all(&line)?;
        let pause = slow_write_pause();
        for chunk in content.chunks(64 << 10) {
            file.write_all(chunk)?;
            if let Some(pause) = pause {
                file.flush()?;
                std::thread::sleep(pause);
            }
        }
        file.sync_all()?;
        std::fs::rename(&temp, &target)?;
        // The rename itself reaches the disk with the directory.
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {e}", target.display())
    })
}

/// For the crash test only: `TRUEIP_RANGES_TEST_WRITE_PAUSE_MS` pauses after each 64 KiB
/// written, so that a test can kill the writer while the file is half-written.
fn slow_write_pause() -> Option<Duration> {
    std::env::var("TRUEIP_RANGES_TEST_WRITE_PAUSE_MS")
        .ok()?
        .parse::<u64>()
        .ok()
        .map(|ms| Duration::from_millis(ms.min(1000)))
}

/// Temporary files a killed writer left: those of this provider whose process is gone.
fn remove_stale_temporaries(dir: &Path, provider: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{provider}.ranges.");
    for entry in entries.flatten().take(10_000) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
            .map(|n| n.split_once('-').map_or(n, |(pid, _)| pid))
        else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
        });
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a cache file or directory may be believed: owned by this user or root, and
/// writable by nobody else. The checksum inside a cache file only finds damage; who can
/// write the file is what makes a list the one `trueip ranges` fetched, so a directory
/// others can write (`/tmp/x`, a group-writable state directory) is refused.
fn owned_safely(stat: &std::fs::Metadata, path: &Path) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    if stat.uid() != me && stat.uid() != 0 {
        return Err(format!(
            "{} belongs to uid {}, not to this user ({me}) or root: its ranges are not believed \
             (hint: give the ranges directory to the user that runs trueip, or use --ranges-dir)",
            path.display(),
            stat.uid()
        ));
    }
    if stat.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by others (mode {:o}): anyone could plant a range list there \
             (hint: chmod go-w {})",
            path.display(),
            stat.mode() & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

/// SHA-256, lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix seconds as RFC 3339 UTC (`2026-12-06T09:59:55Z`).
pub(crate) fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_753_388_594), "2025-07-24T20:23:14Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_list_that_does_not_match_its_checksum_is_refused() {
        let dir = std::env::temp_dir().join(format!("trueip-cache-unit-{}", std::process::id()));
        let content = b"173.245.48.0/20\n2400:cb00::/32".to_vec();
        let meta = Meta { ipv6: 1, ..meta_for(&content, 0) };
        write(&dir, &meta, &content).unwrap();
        let back = read(&dir, "cloudflare").unwrap().unwrap();
        assert_eq!((back.meta, back.edition.counts()), (meta.clone(), (1, 1)));
        let mut text = std::fs::read(path(&dir, "cloudflare")).unwrap();
        text.truncate(text.len() - 3);
        std::fs::write(path(&dir, "cloudflare"), text).unwrap();
        let err = read(&dir, "cloudflare").unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        assert!(read(&dir, "fastly").unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn meta_for(content: &[u8], fetched_at_unix: u64) -> Meta {
        Meta {
            trueip_ranges: FORMAT,
            provider: "cloudflare".into(),
            sources: vec![],
            fetched_at: rfc3339(fetched_at_unix),
            fetched_at_unix,
            token: None,
            published: None,
            ipv4: 1,
            ipv6: 0,
            sha256: sha256_hex(content),
        }
    }

    /// What an outside review planted: a symlink where the cache file or a temporary is, a
    /// directory others may write, a FIFO in place of the file.
    #[test]
    fn the_cache_believes_only_its_owners_plain_files() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = std::env::temp_dir().join(format!("trueip-cache-safety-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let content = b"173.245.48.0/20".to_vec();
        let meta = meta_for(&content, 0);
        write(&dir, &meta, &content).unwrap();
        // A symlink in place of the cache file is not followed when read...
        let victim = dir.join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let target = path(&dir, "cloudflare");
        std::fs::remove_file(&target).unwrap();
        symlink(&victim, &target).unwrap();
        let err = read(&dir, "cloudflare").unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        // ...and a write replaces the link, never writing through it.
        write(&dir, &meta, &content).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(read(&dir, "cloudflare").unwrap().is_some());
        // A FIFO in its place is refused at once, not waited on.
        std::fs::remove_file(&target).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&target).status();
        if made.is_ok_and(|s| s.success()) {
            let err = read(&dir, "cloudflare").unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
            std::fs::remove_file(&target).unwrap();
        }
        // A directory others may write is refused for reading and for writing.
        write(&dir, &meta, &content).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = read(&dir, "cloudflare").unwrap_err();
        assert!(err.contains("writable by others") && err.contains("chmod go-w"), "{err}");
        assert!(write(&dir, &meta, &content).unwrap_err().contains("writable by others"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // So is a cache file others may write.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read(&dir, "cloudflare").unwrap_err().contains("writable by others"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fetch_time_far_ahead_is_stale_not_fresh() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64| meta_for(b"", secs).age(now);
        assert_eq!(at(1_800_000_000 - 60), Duration::from_secs(60));
        assert_eq!(at(1_800_000_000 + 600), Duration::ZERO);
        assert_eq!(at(1_800_000_000 + 86_400 * 365), Duration::MAX);
    }
}
