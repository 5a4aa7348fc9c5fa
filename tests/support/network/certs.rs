//! Certificates made for one test with the openssl CLI: a CA, a server certificate for
//! 127.0.0.1 and a client certificate, as an etcd with `--client-cert-auth` wants them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::processes::peer::temp_dir;
use crate::processes::procs::run_ok;

#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from another CA: etcd must refuse it.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn openssl() -> Command {
    let path = ["/usr/bin/openssl", "/bin/openssl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("openssl not found: run `scripts/test-deps.sh` (apt-get install openssl) or `make test`")
        });
    Command::new(path)
}

/// A self-signed CA in `dir` named `name`.
fn ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    run_ok(
        openssl()
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .args(["-subj", &format!("/CN={name}")])
            .args([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt),
    );
    (crt, key)
}

/// A leaf certificate signed by `ca`, with `ext` (SAN, extended key usage).
fn leaf(dir: &Path, name: &str, ca: &(PathBuf, PathBuf), ext: &str) -> (PathBuf, PathBuf) {
    let (crt, key, csr, extfile) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.ext")),
    );
    std::fs::write(&extfile, ext).expect("write extfile");
    run_ok(
        openssl()
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .args(["-subj", &format!("/CN={name}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    run_ok(
        openssl()
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca.0)
            .arg("-CAkey")
            .arg(&ca.1)
            .arg("-extfile")
            .arg(&extfile)
            .arg("-out")
            .arg(&crt),
    );
    (crt, key)
}

impl Certs {
    pub fn make() -> (Certs, tempfile::TempDir) {
        let tmp = temp_dir("certs");
        let dir = tmp.path();
        let authority = ca(dir, "diskguard-test-ca");
        let server = leaf(
            dir,
            "etcd",
            &authority,
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        let client = leaf(
            dir,
            "diskguard",
            &authority,
            "extendedKeyUsage=clientAuth\n",
        );
        let other = ca(dir, "stranger-ca");
        let stranger = leaf(dir, "stranger", &other, "extendedKeyUsage=clientAuth\n");
        (
            Certs {
                ca: authority.0,
                server_cert: server.0,
                server_key: server.1,
                client_cert: client.0,
                client_key: client.1,
                stranger_cert: stranger.0,
                stranger_key: stranger.1,
            },
            tmp,
        )
    }
}
