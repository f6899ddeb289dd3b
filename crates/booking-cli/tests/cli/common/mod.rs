//! Running the `booking` binary as a process: commands, a server, plain HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_booking");

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns standard output, trimmed.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self.stdout.trim().to_owned()
    }

    /// Asserts success and parses standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Asserts a failure with `code` and a one-line human message containing
    /// `needle`, and nothing on standard output.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        let err = self.stderr.trim_end();
        assert_eq!(err.lines().count(), 1, "one line on stderr: {self:#?}");
        assert!(err.starts_with("error: "), "{self:#?}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}: {self:#?}"
        );
        for dump in ["panicked", "Error {", "Some(", "Os {", "backtrace", "\"\\n"] {
            assert!(!err.contains(dump), "no debug dump ({dump:?}): {self:#?}");
        }
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:#?}");
    }
}

/// A temporary working directory and the environment the binary runs with. The
/// environment starts empty, so nothing of the machine's leaks in.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temporary directory"),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets a variable for every later run.
    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path()).env_clear().args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `booking args...` to completion; a run that takes more than two
    /// minutes is killed and fails the test, so a command that hangs cannot hang
    /// the suite.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the booking binary");
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut text);
                }
                text
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for booking") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("booking {args:?} did not finish within two minutes");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        }
    }

    /// Starts `booking serve --bind 127.0.0.1:0 args...` and waits until it
    /// listens.
    pub fn serve(&self, args: &[&str]) -> Server {
        let log = self
            .path()
            .join(format!("serve-{}.log", uuid::Uuid::new_v4()));
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start booking serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let done = line.starts_with("stop with");
                    banner.push(line);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("the server did not start ({e}): {banner:?}\n{log}");
                }
            }
        }
        let addr = banner[0]
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line names the address: {banner:?}"))
            .to_owned();
        Server {
            child,
            addr,
            banner,
            log,
        }
    }
}

/// A running `booking serve`; killed when dropped if still running.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// What it printed on standard output before serving.
    pub banner: Vec<String>,
    pub log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and returns the exit code once it has stopped.
    pub fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let status = self.child.wait().expect("wait for the server");
        status.code().unwrap_or(-1)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request; returns the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// A fresh user id.
pub fn user() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The date `days` from today (UTC), `YYYY-MM-DD`.
pub fn in_days(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::TimeDelta::days(days)).to_string()
}
