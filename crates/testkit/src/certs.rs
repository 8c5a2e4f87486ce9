//! Test certificates made by openssl: a private CA and a certificate it signed.

use std::process::Command;

/// A private CA (`ca.pem`) and a certificate it signed for 127.0.0.1 and localhost
/// (`cert.pem`, `key.pem`), made by openssl in `dir`; returns the CA's PEM.
pub fn private_ca(dir: &std::path::Path, name: &str) -> String {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl makes the test certificates");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let subject = format!("/CN={name}");
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days", "2", "-subj", &subject, "-keyout", "ca.key", "-out", "ca.pem",
    ]);
    run(&ca);
    let mut leaf = vec!["req"];
    leaf.extend(ec);
    leaf.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    run(&leaf);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    std::fs::read_to_string(dir.join("ca.pem")).unwrap()
}
