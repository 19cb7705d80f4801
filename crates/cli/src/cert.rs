//! `perdure cert`: a CA and node certificates for the node channel's TLS (`[cluster.tls]`) of a
//! local or test cluster.
//!
//! In `--dir`: `ca.pem` and `ca.key` (made once; reused to issue more nodes' certificates, so a
//! node that joins later gets one of the same CA), and per node `node-N.pem` and `node-N.key`,
//! a certificate for the DNS name `node-N.perdure` (the name the channel checks) usable as TLS
//! server and client. Keys are ECDSA P-256, written readable by their owner only.

use anyhow::{bail, Context};
use perdure_cluster::transport::node_name;
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// What `perdure cert` was asked for.
#[derive(clap::Args, Debug)]
pub(crate) struct CertArgs {
    /// Where the CA and the certificates go (created if missing).
    #[arg(long, default_value = "perdure-certs")]
    dir: PathBuf,
    /// Node ids to make certificates for, e.g. `--nodes 1,2,3`.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<u64>,
    /// Years the CA and the certificates are valid (from the start of this year).
    #[arg(long, default_value_t = 10)]
    years: i32,
}

/// Makes (or reuses) the CA in `args.dir` and a certificate per node; prints each node's
/// `[cluster.tls]` section.
pub(crate) fn run(args: CertArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let this_year = this_year();
    let (first, last) = (this_year, this_year + args.years.max(1));
    let ca = ca(&args.dir, first, last)?;
    for &id in &args.nodes {
        if id == 0 {
            bail!("node id 0 is not a node id");
        }
        let (cert_path, key_path) = node_paths(&args.dir, id);
        if cert_path.exists() || key_path.exists() {
            bail!(
                "{} or {} exists already: remove them to make new ones",
                cert_path.display(),
                key_path.display()
            );
        }
        let mut p = CertificateParams::new(vec![node_name(id)])?;
        p.distinguished_name
            .push(DnType::CommonName, format!("perdure node {id}"));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = date_time_ymd(first, 1, 1);
        p.not_after = date_time_ymd(last, 1, 1);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca.cert, &ca.key)?;
        write(&cert_path, &cert.pem(), false)?;
        write(&key_path, &key.serialize_pem(), true)?;
        println!(
            "# node {id}\n[cluster.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            ca.path.display().to_string(),
            cert_path.display().to_string(),
            key_path.display().to_string()
        );
    }
    Ok(())
}

/// The CA of a directory: its certificate (as an issuer), key and the certificate's path.
struct Ca {
    cert: Certificate,
    key: KeyPair,
    path: PathBuf,
}

/// The CA in `dir`, made if there is none yet.
fn ca(dir: &Path, first: i32, last: i32) -> anyhow::Result<Ca> {
    let (path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if path.exists() || key_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let key = KeyPair::from_pem(&read(&key_path)?)
            .with_context(|| format!("{}: not a private key", key_path.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&read(&path)?)
            .with_context(|| format!("{}: not a CA certificate", path.display()))?;
        // Signing the same subject with the same key again gives an issuer whose signatures
        // verify against the ca.pem already handed out.
        let cert = params.self_signed(&key)?;
        eprintln!("using the CA in {}", path.display());
        return Ok(Ca { cert, key, path });
    }
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "perdure cluster CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = date_time_ymd(first, 1, 1);
    p.not_after = date_time_ymd(last, 1, 1);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    write(&path, &cert.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    eprintln!("made a CA in {} (keep ca.key safe)", path.display());
    Ok(Ca { cert, key, path })
}

/// Where node `id`'s certificate and key go.
fn node_paths(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("node-{id}.pem")),
        dir.join(format!("node-{id}.key")),
    )
}

/// Writes `text` to a new file `path` (readable by its owner only if `private`).
fn write(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The current year (UTC), close enough for a validity period that starts on January 1st.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}
