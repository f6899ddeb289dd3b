//! CPU time of this process, and of the spawned servers' threads within it, read
//! from `/proc` (Linux). Elsewhere the figures are absent.

use std::fs;

/// CPU seconds used so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuTimes {
    /// The whole process (every thread, ended ones included).
    pub process_secs: f64,
    /// The threads of servers spawned with `--spawn`.
    pub servers_secs: f64,
}

/// Reads the CPU times now; `None` when `/proc` cannot tell.
pub fn read() -> Option<CpuTimes> {
    let process_secs = booking_http::metrics::cpu_seconds()?;
    let mut servers_ns = 0u64;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let path = t.path();
            let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with(crate::http::SERVER_THREAD_NAME) {
                // The first field of schedstat is the time on CPU, in nanoseconds.
                let sched = fs::read_to_string(path.join("schedstat")).unwrap_or_default();
                servers_ns += sched
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some(CpuTimes {
        process_secs,
        servers_secs: servers_ns as f64 / 1e9,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = super::read() else {
            // Not Linux: nothing to read, and nothing claimed.
            assert!(!std::path::Path::new("/proc/self/stat").exists());
            return;
        };
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = super::read().expect("readable twice");
        assert!(
            after.process_secs - before.process_secs >= 0.1,
            "{before:?} {after:?}"
        );
        assert_eq!(after.servers_secs, 0.0);
    }
}
