//! pebble, Debian's ACME server, with pebble-challtestsrv answering its DNS
//! queries with 127.0.0.1, for the tests of automatic certificates (SPEC §9).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, run_tool, wait_until, Options, Thrust};

/// thrust for app.test on `http` and `https`, ordering from `pebble` and
/// keeping what it orders in `storage`, with the given extra settings.
pub fn acme_thrust(
    pebble: &Pebble,
    storage: &Path,
    (http, https): (u16, u16),
    extra: &[(&'static str, &str)],
) -> Thrust {
    let mut options = Options::app()
        .env("TLS_DOMAIN", "app.test")
        .env("HTTP_PORT", http.to_string())
        .env("HTTPS_PORT", https.to_string())
        .env("ACME_DIRECTORY", pebble.directory.clone())
        .env("SSL_CERT_FILE", pebble.ca.to_string_lossy())
        .env("STORAGE_PATH", storage.to_string_lossy());
    for (name, value) in extra {
        options = options.env(name, *value);
    }
    let mut t = Thrust::start(options);
    // The harness picked its own HTTP port; the ACME server validates on ours.
    t.port = http;
    t
}

/// pebble and its DNS stand-in, on free ports, killed on drop.
pub struct Pebble {
    processes: Vec<Child>,
    pub dir: tempfile::TempDir,
    pub directory: String,
    pub management: u16,
    /// The CA that signed pebble's own HTTPS certificate (for SSL_CERT_FILE).
    pub ca: PathBuf,
}

impl Pebble {
    /// Validates challenges against `http_port` / `tls_port` on 127.0.0.1,
    /// at once.
    pub fn start(http_port: u16, tls_port: u16, eab: Option<(&str, &str)>) -> Pebble {
        Pebble::launch(http_port, tls_port, eab, None, None)
    }

    /// As `start`, issuing certificates valid for `seconds`.
    pub fn start_short_lived(http_port: u16, tls_port: u16, seconds: u64) -> Pebble {
        Pebble::launch(http_port, tls_port, None, None, Some(seconds))
    }

    /// As `start`, but each validation (pebble makes three per challenge)
    /// first waits a random whole number of seconds below `seconds`, as a
    /// real CA's take their time: concurrent orders finish at different
    /// times.
    pub fn start_slow_validations(http_port: u16, tls_port: u16, seconds: u32) -> Pebble {
        Pebble::launch(http_port, tls_port, None, Some(seconds), None)
    }

    fn launch(
        http_port: u16,
        tls_port: u16,
        eab: Option<(&str, &str)>,
        va_sleep: Option<u32>,
        validity: Option<u64>,
    ) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL takes a certificate whose subject equals its
        // issuer for a self-signed one.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "thrust test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        server_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), server_key.serialize_pem()).unwrap();

        let (listen, management, dns) = (free_port(), free_port(), free_port());
        let eab_config = match eab {
            Some((kid, key)) => format!(
                r#","externalAccountBindingRequired": true, "externalAccountMACKeys": {{"{kid}": "{key}"}}"#
            ),
            None => String::new(),
        };
        let validity_config = validity
            .map(|seconds| format!(r#","certificateValidityPeriod": {seconds}"#))
            .unwrap_or_default();
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}", "certificate": "{cert}", "privateKey": "{key}", "httpPort": {http_port}, "tlsPort": {tls_port}, "ocspResponderURL": ""{eab_config}{validity_config}}}}}"#,
            cert = dir.path().join("cert.pem").display(),
            key = dir.path().join("key.pem").display(),
        );
        std::fs::write(dir.path().join("pebble.json"), config).unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
        let dns_server = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
            ])
            .args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv is required; run scripts/test to install pebble");
        let mut pebble = Command::new("pebble");
        pebble.args([
            "-config",
            dir.path().join("pebble.json").to_str().unwrap(),
            "-dnsserver",
            &format!("127.0.0.1:{dns}"),
        ]);
        match va_sleep {
            Some(seconds) => pebble.env("PEBBLE_VA_SLEEPTIME", seconds.to_string()),
            None => pebble.env("PEBBLE_VA_NOSLEEP", "1"),
        };
        let pebble = pebble
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble is required; run scripts/test to install it");
        let pebble = Pebble {
            processes: vec![dns_server, pebble],
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            ca,
            dir,
        };
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
        }));
        pebble
    }

    /// The root that signs pebble's certificates, as PEM in a file.
    pub fn issuing_root(&self) -> PathBuf {
        let out = run_tool(
            "curl",
            &[
                "-s",
                "-S",
                "--cacert",
                self.ca.to_str().unwrap(),
                &format!("https://127.0.0.1:{}/roots/0", self.management),
            ],
        );
        assert!(
            out.stdout.starts_with(b"-----BEGIN"),
            "pebble's root: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = self.dir.path().join("root.pem");
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    /// How many accounts pebble has been asked to make.
    pub fn accounts(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .matches("POST /sign-me-up")
            .count()
    }

    /// How many orders pebble has been asked for.
    pub fn orders(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .matches("POST /order-plz")
            .count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The PEM of the leaf certificate served for app.test on `port`.
pub fn served_leaf(port: u16) -> String {
    let resolve = format!("app.test:{port}:127.0.0.1");
    let url = format!("https://app.test:{port}/");
    let out = run_tool(
        "curl",
        &[
            "-s",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{certs}",
            "--resolve",
            &resolve,
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    let end = text
        .find("-----END CERTIFICATE-----")
        .map_or(text.len(), |i| i + "-----END CERTIFICATE-----".len());
    text[start..end].to_string()
}
