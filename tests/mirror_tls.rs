//! TLS to an external server, against a real PostgreSQL with `ssl = on` that rejects
//! unencrypted TCP connections (a throwaway cluster reconfigured for TCP on 127.0.0.1 with a
//! self-signed certificate made by `openssl`, which the `postgresql` package depends on).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use wandbfs::mirror::embedded::TempCluster;
use wandbfs::mirror::{ConnectOptions, DatabaseUrl, Mirror, MirrorError, TlsPolicy};

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reconfigures `temp` for TLS-only TCP on 127.0.0.1 and returns the port.
fn serve_tls(temp: &TempCluster) -> u16 {
    let cluster = temp.cluster();
    let data = temp.root().join("data");
    let crt = data.join("server.crt");
    let key = data.join("server.key");
    // A CA, and a server certificate it signs (webpki rejects a CA certificate used as the
    // server's own).
    let root = temp.root();
    let ca_key = root.join("ca.key");
    let ca = root.join("ca.pem");
    let csr = root.join("server.csr");
    let ext = root.join("server.ext");
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=wandbfs test CA"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&crt));
    for f in [&crt, &key] {
        cluster.account().chown(f).unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    temp.serve_tcp(
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 127.0.0.1/32 reject\n",
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'",
    )
    .unwrap()
}

async fn uses_tls(mirror: &Mirror) -> bool {
    let client = mirror.pool().get().await.unwrap();
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn url(port: u16, host: &str, params: &str) -> DatabaseUrl {
    DatabaseUrl::parse(&format!(
        "postgresql://wandbfs:unused-password@{host}:{port}/postgres{params}"
    ))
    .unwrap()
    .url
}

#[tokio::test]
async fn sslmodes_against_a_tls_only_server() {
    let temp = tokio::task::spawn_blocking(TempCluster::start)
        .await
        .unwrap()
        .unwrap();
    let port = serve_tls(&temp);
    let ca = temp.root().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let options = ConnectOptions::default();

    // prefer (the default) and require encrypt without checking the self-signed certificate,
    // like libpq; the pool connects, migrates and really uses TLS.
    for params in ["", "?sslmode=prefer", "?sslmode=require"] {
        let u = url(port, "127.0.0.1", params);
        assert_eq!(u.tls_policy(), &TlsPolicy::Encrypt);
        let mirror = Mirror::connect_url(&u, &options).await.unwrap();
        assert!(uses_tls(&mirror).await, "{params}");
    }

    // verify-full with the server's certificate as the trusted root, by name and by IP.
    for host in ["localhost", "127.0.0.1"] {
        let u = url(
            port,
            host,
            &format!("?sslmode=verify-full&sslrootcert={ca}"),
        );
        assert!(matches!(u.tls_policy(), TlsPolicy::Verify { .. }));
        let mirror = Mirror::connect_url(&u, &options).await.unwrap();
        assert!(uses_tls(&mirror).await, "{host}");
    }
    let probe = wandbfs::mirror::probe(&url(
        port,
        "localhost",
        &format!("?sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert_eq!(
        probe.schema_version,
        wandbfs::mirror::schema::SCHEMA_VERSION
    );

    // verify-full without that root: the self-signed certificate is not trusted.
    let err = Mirror::connect_url(&url(port, "localhost", "?sslmode=verify-full"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MirrorError::Db { .. } | MirrorError::InvalidUrl { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("unused-password"), "{err}");

    // disable: the server rejects unencrypted TCP, and says so.
    let err = Mirror::connect_url(&url(port, "127.0.0.1", "?sslmode=disable"), &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );

    // A missing root file is a clear error before any connection.
    let err = Mirror::connect_url(
        &url(
            port,
            "localhost",
            "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ),
        &options,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    assert!(Path::new(ca).exists());
}
