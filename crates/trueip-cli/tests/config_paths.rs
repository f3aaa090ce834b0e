//! A relative path in a config file is relative to the file's directory, whatever
//! directory `trueip` runs in (systemd starts services in `/`); a path on the command
//! line is relative to the working directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn trueip(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trueip"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run trueip")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A fresh directory holding `etc/` (the config and the files it names) and `elsewhere/`
/// (an empty working directory).
fn layout(name: &str) -> (PathBuf, PathBuf) {
    let root =
        std::env::temp_dir().join(format!("trueip-config-paths-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (etc, elsewhere) = (root.join("etc"), root.join("elsewhere"));
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    std::fs::write(etc.join("cf-ips.txt"), "173.245.48.0/20\n").expect("ranges");
    std::fs::write(etc.join("sign.key"), "s3cret-s3cret-s3cret-s3cret-s3cret-s3cret\n")
        .expect("key");
    std::fs::write(
        etc.join("trueip.toml"),
        "[client_ip]\nstrategy = \"cloudflare\"\n\n[client_ip.providers]\ncloudflare = \"cf-ips.txt\"\n\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\nclient_ip = { strategy = \"cloudflare\", providers = { cloudflare = [\"cf-ips.txt\"] } }\n\n\
         [upstream]\nsign = { key_file = \"sign.key\" }\n\n[ranges]\ndir = \"cache\"\n",
    )
    .expect("config");
    (etc, elsewhere)
}

/// Fails on the old code, which read `cf-ips.txt` and `sign.key` from the working
/// directory: "cannot read \"cf-ips.txt\"".
#[test]
fn serve_reads_the_files_a_config_names_beside_it_from_any_directory() {
    let (etc, elsewhere) = layout("serve");
    let config = etc.join("trueip.toml");
    let out = trueip(&elsewhere, &["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert!(out.status.success(), "{}", text(&out));
    // `--config` itself is read from the working directory.
    let out = trueip(&etc, &["serve", "--config", "trueip.toml", "--check"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A `--trust NAME=FILE` path is the command line's: read from the working directory,
/// not the config's.
#[test]
fn a_provider_file_on_the_command_line_is_read_from_the_working_directory() {
    let (etc, elsewhere) = layout("flag");
    let bare = elsewhere.join("bare.toml");
    std::fs::write(&bare, "[client_ip]\nstrategy = \"cloudflare\"\n").expect("config");
    let bare = bare.to_str().unwrap();
    let flag = ["--trust", "cloudflare=cf-ips.txt", "--check"];
    let out = trueip(&etc, &[&["serve", "--config", bare][..], &flag].concat());
    assert!(out.status.success(), "{}", text(&out));
    let out = trueip(&elsewhere, &[&["serve", "--config", bare][..], &flag].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cf-ips.txt"), "{}", text(&out));
}

/// Fails on the old code, as `serve` did.
#[test]
fn explain_reads_a_configs_provider_files_beside_it_from_any_directory() {
    let (etc, elsewhere) = layout("explain");
    let config = etc.join("trueip.toml");
    let config = config.to_str().unwrap();
    for listener in [None, Some("0")] {
        let mut args = vec![
            "explain",
            "--config",
            config,
            "--peer",
            "173.245.48.1",
            "-H",
            "CF-Connecting-IP: 198.51.100.7",
        ];
        if let Some(l) = listener {
            args.extend(["--listener", l]);
        }
        let out = trueip(&elsewhere, &args);
        assert!(out.status.success(), "{listener:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("client   198.51.100.7"),
            "{listener:?}: {}",
            text(&out)
        );
    }
}
