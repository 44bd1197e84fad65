//! An HTTP/3 load generator, as h2load is for HTTP/2 (Debian's h2load is
//! built without HTTP/3): CONNECTIONS QUIC connections, each keeping
//! STREAMS requests for PATH in flight, on one thread, for WARMUP seconds
//! unmeasured and then SECONDS measured. The server must present the
//! certificate in CERT_FILE (pinned, so a self-signed one from `openssl
//! req -x509`, which marks itself a CA, will do); SERVER_NAME is sent.
//!
//! Usage: h3_load HOST:PORT SERVER_NAME CERT_FILE PATH CONNECTIONS STREAMS WARMUP SECONDS
//! Prints one JSON line (`tally::report`): requests answered 2xx in the
//! measured seconds, errors, requests per second, latency percentiles in ms.
//! benches/http3.py runs it.

#[path = "tally.rs"]
mod tally;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use tokio::time::Instant;

use tally::Seen;

struct Plan {
    url: http::Uri,
    warm_until: Instant,
    end: Instant,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: h3_load HOST:PORT SERVER_NAME CERT_FILE PATH CONNECTIONS STREAMS WARMUP SECONDS"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, name, ca, path, connections, streams, warmup, seconds] = args.as_slice() else {
        return usage();
    };
    let (Ok(addr), Ok(connections), Ok(streams), Ok(warmup), Ok(seconds)) = (
        addr.parse::<SocketAddr>(),
        connections.parse::<u32>(),
        streams.parse::<u32>(),
        warmup.parse::<u64>(),
        seconds.parse::<u64>(),
    ) else {
        return usage();
    };
    let Ok(url) = format!("https://{name}:{}{path}", addr.port()).parse::<http::Uri>() else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("h3_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let endpoint = match client_endpoint(ca) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                eprintln!("h3_load: {e}");
                return ExitCode::FAILURE;
            }
        };
        let start = Instant::now();
        let plan = Arc::new(Plan {
            url,
            warm_until: start + Duration::from_secs(warmup),
            end: start + Duration::from_secs(warmup + seconds),
        });
        let mut workers = Vec::new();
        for _ in 0..connections {
            let connecting = match endpoint.connect(addr, name) {
                Ok(connecting) => connecting,
                Err(e) => {
                    eprintln!("h3_load: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let connection = match connecting.await {
                Ok(connection) => connection,
                Err(e) => {
                    eprintln!("h3_load: cannot connect: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (mut driver, sender) =
                match h3::client::new(h3_quinn::Connection::new(connection)).await {
                    Ok(pair) => pair,
                    Err(e) => {
                        eprintln!("h3_load: no HTTP/3: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
            for _ in 0..streams {
                workers.push(tokio::spawn(requests(sender.clone(), plan.clone())));
            }
        }
        let mut all = Seen::default();
        for worker in workers {
            if let Ok(seen) = worker.await {
                all.add(seen);
            }
        }
        tally::report(all, seconds as f64);
        ExitCode::SUCCESS
    })
}

/// A client endpoint that accepts only the certificate in `cert_file`,
/// offering `h3`.
fn client_endpoint(cert_file: &str) -> Result<quinn::Endpoint, String> {
    let pinned =
        CertificateDer::from_pem_file(cert_file).map_err(|e| format!("{cert_file}: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(Pinned {
        cert: pinned,
        schemes: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0))).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    Ok(endpoint)
}

/// Accepts the one certificate it holds, with a valid handshake signature.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One request after another on `sender` until the plan ends.
async fn requests(mut sender: Sender, plan: Arc<Plan>) -> Seen {
    let mut seen = Seen::default();
    loop {
        let started = Instant::now();
        if started >= plan.end {
            return seen;
        }
        let ok = one_request(&mut sender, &plan.url).await;
        if started < plan.warm_until {
            continue;
        }
        match ok {
            Ok(true) => seen.answered(started.elapsed()),
            Ok(false) | Err(_) => seen.errors += 1,
        }
        if ok.is_err() {
            // The connection is gone: this worker stops.
            return seen;
        }
    }
}

/// One GET read to its end; true when it was answered 2xx.
async fn one_request(sender: &mut Sender, url: &http::Uri) -> Result<bool, h3::error::StreamError> {
    let request = http::Request::get(url.clone()).body(()).unwrap_or_default();
    let mut stream = sender.send_request(request).await?;
    stream.finish().await?;
    let response = stream.recv_response().await?;
    while let Some(mut chunk) = stream.recv_data().await? {
        chunk.advance(chunk.remaining());
    }
    Ok(response.status().is_success())
}
