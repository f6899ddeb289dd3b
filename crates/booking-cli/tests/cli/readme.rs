//! The README's quick start and walk-through, run as they are written, so that they
//! cannot drift from what the service and the command really do.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Sandbox};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    std::fs::read_to_string(path).expect("README.md")
}

/// The body of the first ```sh block after `heading_or_marker`, up to `end`.
fn sh_block(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("README has {start:?}"));
    let rest = &text[from..];
    let to = rest
        .find(end)
        .unwrap_or_else(|| panic!("README has {end:?} after {start:?}"));
    let section = &rest[..to];
    let open = section
        .find("```sh\n")
        .unwrap_or_else(|| panic!("a ```sh block after {start:?}"));
    let body = &section[open + "```sh\n".len()..];
    let close = body.find("\n```").expect("the block is closed");
    body[..close].to_owned()
}

#[test]
fn the_two_commands_are_serve_demo_and_the_tests() {
    let text = readme();
    let block = sh_block(&text, "## The two commands", "\n## ");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -p booking-cli -- serve --demo",
            "cargo test --workspace"
        ]
    );
    assert!(
        text.contains("cargo run --example embed_memory"),
        "the embedding example stays in the README"
    );
}

#[test]
fn the_walk_through_runs_against_a_fresh_server() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "the README walk-through test needs curl (Debian/Ubuntu: apt-get install curl)"
    );
    let script = sh_block(
        &readme(),
        "<!-- walkthrough:begin -->",
        "<!-- walkthrough:end -->",
    );
    assert!(script.contains("BOOKING_URL=${BOOKING_URL:-http://127.0.0.1:8080}"));

    // The quick start's server, on a free port, in an empty directory.
    let sb = Sandbox::new();
    let server = sb.serve(&["--demo"]);
    let path = sb.path().join("walkthrough.sh");
    std::fs::write(&path, &script).expect("write the script");

    // `booking` on the PATH is the binary under test; bash stops at the first
    // failing command, which a copy into an interactive shell would only show.
    let bin_dir = Path::new(BIN).parent().expect("the binary's directory");
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-eo", "pipefail"])
        .arg(&path)
        .current_dir(sb.path())
        .env_clear()
        .env("PATH", path_var)
        .env("BOOKING_URL", server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let started = Instant::now();
    while child.try_wait().expect("wait for bash").is_none() {
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("the script's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "stdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(out.status.success(), "the walk-through failed: {report}");

    // Each step did what the README says.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"ok"), "healthz: {report}");
    assert!(
        stdout.contains("\"name\":\"Blue Night\""),
        "concerts: {report}"
    );
    assert!(
        stdout.contains("\"kind\":\"charge\"") && stdout.contains("\"payment_id\""),
        "charge and payment over HTTP: {report}"
    );
    assert!(
        stdout.contains("\"balance\":5000"),
        "Alice paid 5000: {report}"
    );
    assert!(stdout.contains("admitted: active until"), "{report}");
    assert!(
        stdout.contains(". free   h held   X sold"),
        "seat map: {report}"
    );
    assert!(
        stdout.contains("[{\"payment_id\""),
        "Alice's payments read with her ended token: {report}"
    );
    assert!(
        stdout.contains("balance: 10,000"),
        "Bob paid two seats of 5000 at once: {report}"
    );
    assert!(
        stdout.contains("PAYMENT") && stdout.contains("TOTAL"),
        "Bob's payments: {report}"
    );
    assert!(stdout.contains("sales of concert 1"), "{report}");
    assert!(stdout.contains("waiting:"), "queue: {report}");
    assert!(stdout.contains("balance of "), "Alice's wallet: {report}");

    // Three seats are sold, one to Alice and two to Bob, and nothing is held.
    let sales = sb.run(&["sales", "1", "--json"]).json();
    assert_eq!(sales["total"]["seats_sold"], 3, "{report}");
    assert_eq!(sales["total"]["revenue"], 15_000, "{report}");
    assert_eq!(sales["total"]["seats_held"], 0, "{report}");
    assert_eq!(server.terminate(), 0);
}
