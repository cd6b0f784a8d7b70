//! Benchmark load generator: closed-loop `/retrieve` clients over keep-alive HTTP/1.1.
//!
//! The benchmark machine has two cores, shared by the service and its clients. A Python client
//! spends about a millisecond of CPU per request (and its threads contend for the GIL), which
//! at eight clients is a quarter of the machine; this client spends a few microseconds, so the
//! latency it reports is the service's. Plain blocking sockets, one thread per client, no HTTP
//! library: the request is fixed and the response only needs its status and length.
//!
//! Usage: retrieve_load HOST:PORT INDEX QUERIES.jsonl CLIENTS SECONDS
//!
//! Every client sends the queries of QUERIES.jsonl (`{"query": ...}` per line) in turn, client
//! `k` starting at query `k`, with `max_node_count` 5, for SECONDS after one warm-up pass of 20
//! queries. Prints one JSON object: p50/p99/max latency in ms, requests, requests/s, and
//! failures (any status other than 200 or a broken connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One keep-alive connection to the service.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Connection {
    fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self { reader: BufReader::new(stream.try_clone()?), writer: stream, host: addr.to_owned() })
    }

    /// Sends one POST and reads the whole response; returns its status.
    fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request)?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let mut length = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.ok_or_else(|| bad("no content-length"))?;
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 6, "usage: retrieve_load HOST:PORT INDEX QUERIES.jsonl CLIENTS SECONDS");
    let (addr, index) = (args[1].clone(), args[2].clone());
    let clients: usize = args[4].parse()?;
    let seconds: f64 = args[5].parse()?;
    anyhow::ensure!(clients > 0, "CLIENTS must be at least 1");
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for line in BufReader::new(std::fs::File::open(&args[3])?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let q: Value = serde_json::from_str(&line)?;
        let query = q["query"].as_str().ok_or_else(|| anyhow::anyhow!("a line of {} has no query", args[3]))?;
        bodies.push(serde_json::to_vec(&json!({"index_name": index, "query": query, "max_node_count": 5}))?);
    }
    anyhow::ensure!(!bodies.is_empty(), "{} holds no queries", args[3]);

    let mut warm = Connection::open(&addr)?;
    for body in bodies.iter().take(20) {
        anyhow::ensure!(warm.post("/retrieve", body)? == 200, "warm-up request failed");
    }
    let bodies = std::sync::Arc::new(bodies);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|k| {
            let (bodies, addr) = (std::sync::Arc::clone(&bodies), addr.clone());
            std::thread::spawn(move || -> (Vec<f64>, usize) {
                let mut latencies = Vec::new();
                let mut failures = 0;
                let Ok(mut conn) = Connection::open(&addr) else {
                    return (latencies, 1);
                };
                let mut i = k;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match conn.post("/retrieve", &bodies[i % bodies.len()]) {
                        Ok(200) => latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                        Ok(_) => failures += 1,
                        Err(_) => {
                            failures += 1;
                            match Connection::open(&addr) {
                                Ok(c) => conn = c,
                                Err(_) => return (latencies, failures),
                            }
                        }
                    }
                    i += clients;
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failures = 0;
    for w in workers {
        let (latencies, failed) = w.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        all.extend(latencies);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "clients": clients,
            "p50": round2(percentile(&all, 50.0)),
            "p99": round2(percentile(&all, 99.0)),
            "max": round2(all.last().copied().unwrap_or(0.0)),
            "n": all.len(),
            "req_per_s": (all.len() as f64 / elapsed * 10.0).round() / 10.0,
            "failures": failures,
        })
    );
    Ok(())
}
