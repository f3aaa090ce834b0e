//! `unix:/path` listeners: binding safely over a stale socket file, the file's mode and
//! owner, and removing it on shutdown.
//!
//! A socket file left by a process that died blocks `bind` (`EADDRINUSE`). The usual fix,
//! "remove the path first", removes whatever is there — a regular file, or through a
//! symlink someone planted, a file elsewhere. Here the path is looked at without
//! following links: only a socket is removed, and only when nothing accepts on it (a
//! connect is refused), so a second trueip does not unlink the first one's socket.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::config::{SocketMode, SocketOwner};

/// A bound Unix socket file: removed by [`remove`](Self::remove) on shutdown, if it is
/// still the one this process made.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file `bind` made.
    id: (u64, u64),
}

impl SocketFile {
    /// Removes the socket file, unless something else now stands at its path.
    pub(crate) fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), "cannot remove the socket file: {e}");
                }
            }
            _ => {}
        }
    }
}

/// Why a Unix socket could not be bound.
#[derive(Debug)]
pub(crate) enum BindError {
    /// Something that is not a socket (a file, a directory, a symlink) is at the path.
    NotASocket(&'static str),
    /// A live server accepts on the socket at the path.
    InUse,
    /// The operating system said no.
    Io(io::Error),
    /// Mode or owner could not be set.
    Setup(&'static str, io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::NotASocket(what) => write!(
                f,
                "a {what} is at that path, not a socket: trueip removes only a stale socket \
                 (hint: remove it yourself if it is not needed, or choose another path)"
            ),
            BindError::InUse => f.write_str(
                "another server accepts connections on that socket (hint: stop it, or choose another path)",
            ),
            BindError::Io(e) => write!(f, "{e}"),
            BindError::Setup(what, e) => write!(f, "cannot set the socket's {what}: {e}"),
        }
    }
}

/// Binds a listening Unix socket at `path` (non-blocking, ready for tokio), replacing a
/// stale socket file, then sets its mode and owner.
pub(crate) fn bind(
    path: &Path,
    mode: Option<SocketMode>,
    owner: Option<&SocketOwner>,
) -> Result<(UnixListener, SocketFile), BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse);
            }
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(BindError::Io)?;
        }
        Ok(m) => {
            let t = m.file_type();
            let what = if t.is_symlink() {
                "symbolic link"
            } else if t.is_dir() {
                "directory"
            } else if t.is_file() {
                "regular file"
            } else {
                "special file"
            };
            return Err(BindError::NotASocket(what));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BindError::Io(e)),
    }
    let listener = UnixListener::bind(path).map_err(BindError::Io)?;
    let made = std::fs::symlink_metadata(path).map_err(BindError::Io)?;
    let file = SocketFile { path: path.to_path_buf(), id: (made.dev(), made.ino()) };
    let setup = || -> Result<(), BindError> {
        if let Some(owner) = owner {
            std::os::unix::fs::lchown(path, owner.uid, owner.gid)
                .map_err(|e| BindError::Setup("owner", e))?;
        }
        if let Some(SocketMode(bits)) = mode {
            // The socket file itself (`bind` just made it: no link to follow).
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits))
                .map_err(|e| BindError::Setup("mode", e))?;
        }
        listener.set_nonblocking(true).map_err(BindError::Io)
    };
    if let Err(e) = setup() {
        file.remove();
        return Err(e);
    }
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trueip-unix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The type of what is at `path`, a symlink itself rather than what it points to.
    fn file_type(path: &Path) -> std::fs::FileType {
        std::fs::symlink_metadata(path).unwrap().file_type()
    }

    #[test]
    fn a_stale_socket_is_replaced_and_removed_on_shutdown() {
        let dir = temp_dir("stale");
        let path = dir.join("s.sock");
        // A socket file whose server is gone.
        drop(UnixListener::bind(&path).unwrap());
        assert!(file_type(&path).is_socket());
        let (_l, file) = bind(&path, Some(SocketMode(0o600)), None).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        file.remove();
        assert!(std::fs::symlink_metadata(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_live_socket_a_file_or_a_symlink_is_left_alone() {
        let dir = temp_dir("alone");
        let live = dir.join("live.sock");
        let _server = UnixListener::bind(&live).unwrap();
        assert!(matches!(bind(&live, None, None), Err(BindError::InUse)));
        assert!(live.exists());

        let file = dir.join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let err = bind(&file, None, None).unwrap_err();
        assert!(err.to_string().contains("regular file"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        // A symlink to a stale socket is not followed, and neither is removed.
        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let link = dir.join("link.sock");
        std::os::unix::fs::symlink(&stale, &link).unwrap();
        let err = bind(&link, None, None).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(file_type(&stale).is_socket());
        assert!(file_type(&link).is_symlink());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_replaced_after_bind_is_not_removed() {
        let dir = temp_dir("replaced");
        let path = dir.join("s.sock");
        let (_l, file) = bind(&path, None, None).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        file.remove();
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
