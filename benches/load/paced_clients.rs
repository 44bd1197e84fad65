//! Many HTTP/1.1 keep-alive clients, each sending one request at a fixed
//! pace, with latency counted from when each request was due (so a server
//! that falls behind is charged for the wait, as wrk2 does): the load shape
//! of a busy site's front, where most connections are idle most of the time.
//! Clients start spread over the first period, so their requests are spread
//! evenly over every second instead of arriving all at once.
//!
//! Usage: paced_clients HOST:PORT PATH CLIENTS REQUESTS_PER_SECOND WARMUP_SECONDS SECONDS
//! Prints one JSON line: requests answered after warm-up, errors, latency
//! percentiles in ms. benches/many_clients.py runs it.

#[path = "tally.rs"]
mod tally;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use tally::Seen;

struct Plan {
    addr: SocketAddr,
    request: Vec<u8>,
    clients: u32,
    period: Duration,
    warm_until: Instant,
    end: Instant,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: paced_clients HOST:PORT PATH CLIENTS REQUESTS_PER_SECOND WARMUP_SECONDS SECONDS"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path, clients, rate, warmup, seconds] = args.as_slice() else {
        return usage();
    };
    let (Ok(addr), Ok(clients), Ok(rate), Ok(warmup), Ok(seconds)) = (
        addr.parse::<SocketAddr>(),
        clients.parse::<u32>(),
        rate.parse::<f64>(),
        warmup.parse::<f64>(),
        seconds.parse::<f64>(),
    ) else {
        return usage();
    };
    if clients == 0 || rate <= 0.0 {
        return usage();
    }
    // One thread: the fronts measured get the rest of the machine.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("paced_clients: {e}");
            return ExitCode::FAILURE;
        }
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: paced_clients\r\n\r\n");
    runtime.block_on(async {
        let start = Instant::now();
        let warm_until = start + Duration::from_secs_f64(warmup);
        let plan = std::sync::Arc::new(Plan {
            addr,
            request: request.into_bytes(),
            clients,
            period: Duration::from_secs_f64(1.0 / rate),
            warm_until,
            end: warm_until + Duration::from_secs_f64(seconds),
        });
        let tasks: Vec<_> = (0..clients)
            .map(|n| tokio::spawn(client(plan.clone(), n, start)))
            .collect();
        let mut all = Seen::default();
        for task in tasks {
            if let Ok(seen) = task.await {
                all.add(seen);
            } else {
                all.errors += 1;
            }
        }
        tally::report(all, seconds);
    });
    ExitCode::SUCCESS
}

/// One client: connects at its place in the first period, then sends a
/// request every period on the same connection (a new one after a failure).
async fn client(plan: std::sync::Arc<Plan>, n: u32, start: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut due = start + plan.period.mul_f64(f64::from(n) / f64::from(plan.clients));
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    while due < plan.end {
        tokio::time::sleep_until(due).await;
        let answered = match conn.as_mut() {
            Some(stream) => exchange(stream, &plan.request, &mut buf).await,
            None => match TcpStream::connect(plan.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let stream = conn.insert(stream);
                    exchange(stream, &plan.request, &mut buf).await
                }
                Err(e) => Err(e),
            },
        };
        match answered {
            Ok(()) if due >= plan.warm_until => {
                seen.answered(due.elapsed());
            }
            Ok(()) => {}
            Err(_) => {
                conn = None;
                if due >= plan.warm_until {
                    seen.errors += 1;
                }
            }
        }
        due += plan.period;
    }
    seen
}

/// Sends the request and reads one whole response (a Content-Length body).
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    stream.write_all(request).await?;
    buf.clear();
    let mut chunk = [0u8; 16384];
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed before the response ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(bad("not 200"));
        }
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .ok_or_else(|| bad("no Content-Length"))?;
        if buf.len() >= head_end + 4 + length {
            return Ok(());
        }
    }
}
