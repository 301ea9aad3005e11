//! How long one scrypt hash takes on this machine at the given cost (OWASP's 17 by
//! default): `cargo run --release -p user-service --example hash_time [-- LOG_N [RUNS]]`.

use std::time::Instant;

use user_service::password::{memory_per_hash, Hasher};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let log_n: u8 = args.next().map_or(Ok(17), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(7), |a| a.parse())?;
    let hasher = Hasher::new(log_n).await?;
    let mut hash_ms = Vec::new();
    let mut verify_ms = Vec::new();
    for i in 0..runs {
        let started = Instant::now();
        let hash = hasher.hash(format!("a passphrase number {i}")).await?;
        hash_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        hasher
            .verify(format!("a passphrase number {i}"), Some(hash))
            .await?;
        verify_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "scrypt log_n={log_n} r=8 p=1 ({} MiB per hash), {runs} runs, concurrency cap {}",
        memory_per_hash(log_n) >> 20,
        hasher.concurrency()
    );
    println!(
        "hash   median {:.1} ms  min {:.1} ms  max {:.1} ms",
        median(&mut hash_ms),
        min(&hash_ms),
        max(&hash_ms)
    );
    println!(
        "verify median {:.1} ms  min {:.1} ms  max {:.1} ms",
        median(&mut verify_ms),
        min(&verify_ms),
        max(&verify_ms)
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}
