//! The web pages in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, started by each test on a free port) against a real
//! `booking serve` on a fresh SQLite database.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (CI installs them);
//! `BOOKING_CHROMIUM` and `BOOKING_CHROMEDRIVER` name other binaries. Without
//! them the tests fail and say how to install them.
//!
//! Every step saves a screenshot under `target/browser-screenshots/`. Waits are
//! for conditions in the page, with a generous deadline; no fixed sleep decides
//! an outcome.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Sandbox, Server, http, user};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "browser-test-admin-key";

/// How long any condition in the page may take to come true.
const DEADLINE: Duration = Duration::from_secs(45);

// --- the browser ------------------------------------------------------------------

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn binary(var: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    on_path(names).unwrap_or_else(|| {
        panic!(
            "the browser tests need Chromium and its WebDriver ({} not found on PATH). \
             Install them with `apt-get install chromium chromium-driver` (Debian; \
             `.ci/run` does it), or name the binaries in BOOKING_CHROMIUM and \
             BOOKING_CHROMEDRIVER",
            names.join(" or ")
        )
    })
}

/// A chromedriver process on a free loopback port; stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    chromium: PathBuf,
}

impl Driver {
    fn start() -> Driver {
        let chromium = binary("BOOKING_CHROMIUM", &["chromium", "chromium-browser"]);
        let driver = binary("BOOKING_CHROMEDRIVER", &["chromedriver"]);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let mut d = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(
                started.elapsed() < DEADLINE,
                "chromedriver did not listen within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// A new browser with its own fresh profile and a window of `width` x
    /// `height` (from 500 wide; narrower is a phone's screen, emulated).
    async fn browser(&self, profile: &Path, width: u32, height: u32) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        let mut options = json!({
                "binary": self.chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
        });
        if width < 500 {
            // A desktop window cannot be that narrow: emulate the phone's screen.
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "touch": true }
            });
        }
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium over WebDriver: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the page ---------------------------------------------------------------------

/// `target/browser-screenshots/`, beside the binary under test.
fn shots_dir() -> PathBuf {
    let target = Path::new(BIN)
        .ancestors()
        .nth(2)
        .expect("the binary lives in target/<profile>/")
        .to_owned();
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).expect("save the screenshot");
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
}

async fn text(c: &Client, id: &str) -> String {
    js(
        c,
        &format!("return document.getElementById('{id}').textContent.trim()"),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// Waits until `script` returns `true` in the page; on time-out saves a
/// screenshot and fails with what the page shows.
async fn until(c: &Client, what: &str, script: &str) {
    let started = Instant::now();
    loop {
        if let Ok(Value::Bool(true)) = c.execute(script, vec![]).await {
            return;
        }
        if started.elapsed() > DEADLINE {
            let name = format!(
                "failed-{}",
                what.replace(|ch: char| !ch.is_alphanumeric(), "-")
            );
            shot(c, &name).await;
            let notice = text(c, "notice").await;
            let body = js(c, "return document.body.innerText").await;
            panic!(
                "timed out waiting for {what} (screenshot {name}.png)\nnotice: {notice}\npage: {}",
                body.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn visible(view: &str) -> String {
    format!("return !document.getElementById('{view}').hidden")
}

fn notice_has(words: &str) -> String {
    format!("return document.getElementById('notice').textContent.includes({words:?})")
}

/// Every form control has a label and every button a name; nothing is wider than
/// the window.
/// Changing the numbers of `changes` (element id, new text) moves nothing on the
/// page: the elements `watched` keep their places and sizes.
async fn check_no_shift(c: &Client, what: &str, changes: &[(&str, &str)], watched: &[&str]) {
    let script = format!(
        "const ids = {watched};
         const changes = {changes};
         const boxes = () => ids.map(id => {{
           const r = document.getElementById(id).getBoundingClientRect();
           return [r.x, r.y, r.width, r.height].map(v => Math.round(v * 10) / 10).join(' ');
         }});
         const before = boxes();
         const saved = changes.map(([id]) => document.getElementById(id).textContent);
         for (const [id, text] of changes) document.getElementById(id).textContent = text;
         const after = boxes();
         changes.forEach(([id], i) => {{ document.getElementById(id).textContent = saved[i]; }});
         return {{ before, after }};",
        watched = json!(watched),
        changes = json!(changes),
    );
    let r = js(c, &script).await;
    assert_eq!(
        r["before"], r["after"],
        "{what}: the layout moved when numbers changed"
    );
}

async fn check_accessible(c: &Client, page: &str) {
    let missing = js(
        c,
        "const bad = [];
         for (const e of document.querySelectorAll('input, select, textarea')) {
           if (e.offsetParent === null) continue;
           if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) bad.push(e.id || e.outerHTML);
         }
         for (const b of document.querySelectorAll('button')) {
           if (b.offsetParent === null) continue;
           if (!b.textContent.trim() && !b.getAttribute('aria-label')) bad.push(b.id || b.outerHTML);
         }
         return bad;",
    )
    .await;
    assert_eq!(
        missing,
        json!([]),
        "{page}: controls without a label or a name"
    );
    let overflow = js(
        c,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "{page}: the page is wider than the window by {overflow} px"
    );
}

// --- the server -------------------------------------------------------------------

fn serve(sb: &Sandbox, extra: &[&str]) -> Server {
    let mut args = vec!["--demo", "--admin-key", ADMIN_KEY, "--log", "warn"];
    args.extend_from_slice(extra);
    sb.serve(&args)
}

fn admin(server: &Server, method: &str, path: &str, body: Option<&str>) -> Value {
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, text) = http(
        &server.addr,
        method,
        path,
        &[("Authorization", auth.as_str())],
        body,
    );
    assert!(status < 300, "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// The sales row of concert 1 on `date`.
fn sales_on(server: &Server, date: &str) -> Value {
    let rows = admin(server, "GET", "/v1/admin/concerts/1/sales", None);
    rows.as_array()
        .expect("rows")
        .iter()
        .find(|r| r["date"] == date)
        .cloned()
        .unwrap_or_else(|| panic!("no sales row for {date}: {rows}"))
}

/// Opens the page and joins the line; returns when it shows the shop.
async fn join_and_enter(c: &Client, url: &str) {
    c.goto(url).await.expect("open the page");
    until(c, "the join button", &visible("view-join")).await;
    c.find(Locator::Id("join"))
        .await
        .expect("join")
        .click()
        .await
        .expect("click join");
    until(c, "the shop", &visible("view-shop")).await;
    until(
        c,
        "the seat map and the session's countdown",
        "return document.querySelectorAll('#seats button.seat').length === 50
            && /^[0-9]+:[0-9]{2}$/.test(document.getElementById('session-left').textContent)",
    )
    .await;
}

/// Records every status request the page makes (when it was sent, when its
/// answer came, and the `poll_after_ms` it carried).
const RECORD_POLLS: &str = "
  window.__polls = [];
  const original = window.fetch;
  window.fetch = async (...args) => {
    const url = String(args[0]);
    const rec = { at: performance.now() };
    const isStatus = url.includes('/v1/queue/status');
    if (isStatus) window.__polls.push(rec);
    const res = await original(...args);
    if (isStatus) {
      rec.done = performance.now();
      try { rec.after = (await res.clone().json()).poll_after_ms; } catch (e) {}
    }
    return res;
  };
  return true;";

// --- an event stream in front of the server ---------------------------------------

/// A loopback proxy in front of `booking serve`. With [`Events::Cut`], it answers
/// `GET /v1/queue/events` itself, by the route's contract (the token as `?token=`,
/// `text/event-stream`, `event: status` with the JSON of `GET /v1/queue/status`,
/// comment lines as keep-alive, the stream ends after a final state), and cuts its
/// first stream after one event, as a lost connection. With [`Events::Refused`], it
/// answers that route 404, as a server without it would, so the page polls. Every
/// other request is passed on, unless the proxy is `down`: then connections are
/// dropped unanswered, as a network that went away.
struct EventProxy {
    url: String,
    shared: Arc<ProxyShared>,
}

/// What the proxy does with `GET /v1/queue/events`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Events {
    /// Answers it itself, and cuts the first stream after one event.
    Cut,
    /// Answers 404: a server that pushes nothing.
    Refused,
}

struct ProxyShared {
    backend: String,
    events: Events,
    down: AtomicBool,
    streams: AtomicUsize,
    status_polls: AtomicUsize,
}

impl EventProxy {
    fn start(backend: &str, events: Events) -> EventProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(ProxyShared {
            backend: backend.to_owned(),
            events,
            down: AtomicBool::new(false),
            streams: AtomicUsize::new(0),
            status_polls: AtomicUsize::new(0),
        });
        let for_thread = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let shared = Arc::clone(&for_thread);
                std::thread::spawn(move || proxy_one(conn, &shared));
            }
        });
        EventProxy { url, shared }
    }

    fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

/// Serves one request of `client` (every answer closes the connection).
fn proxy_one(mut client: TcpStream, shared: &ProxyShared) {
    if shared.down.load(Ordering::SeqCst) {
        return;
    }
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut body = raw[head_end..].to_vec();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default().to_owned();
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers: Vec<&str> = lines
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let length = headers
        .iter()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    while body.len() < length {
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if shared.events == Events::Refused && target.starts_with("/v1/queue/events") {
        let body = r#"{"error":{"code":"no_such_endpoint","message":"no such endpoint"}}"#;
        let _ = write!(
            client,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    if shared.events == Events::Cut
        && let Some(query) = target.strip_prefix("/v1/queue/events?token=")
    {
        let token = percent_decode(query);
        let n = shared.streams.fetch_add(1, Ordering::SeqCst);
        events(client, &shared.backend, &token, n == 0);
        return;
    }
    if target.starts_with("/v1/queue/status") {
        shared.status_polls.fetch_add(1, Ordering::SeqCst);
    }
    let Ok(mut up) = TcpStream::connect(&shared.backend) else {
        return;
    };
    let mut out = format!("{request_line}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if up.write_all(out.as_bytes()).is_err() || up.write_all(&body).is_err() {
        return;
    }
    let _ = std::io::copy(&mut up, &mut client);
}

/// The event stream of one connection: the backend's status every 200 ms.
fn events(mut client: TcpStream, backend: &str, token: &str, cut_after_one: bool) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                Cache-Control: no-cache\r\nConnection: close\r\n\r\n: connected\n\n";
    if client.write_all(head.as_bytes()).is_err() {
        return;
    }
    let auth = format!("Bearer {token}");
    loop {
        let (code, json) = http(
            backend,
            "GET",
            "/v1/queue/status",
            &[("Authorization", auth.as_str())],
            None,
        );
        if code != 200 {
            return;
        }
        let event = format!(": keep-alive\n\nevent: status\ndata: {}\n\n", json.trim());
        if client.write_all(event.as_bytes()).is_err() {
            return;
        }
        let status: Value = serde_json::from_str(&json).unwrap_or_default();
        if cut_after_one || status["status"] != "waiting" {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until `count` reaches `at_least`.
async fn until_count(what: &str, count: &AtomicUsize, at_least: usize) {
    let started = Instant::now();
    while count.load(Ordering::SeqCst) < at_least {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for {what}: {} of {at_least}",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- the scenarios ----------------------------------------------------------------

/// Join while admission is paused behind two others, reload and keep the place,
/// wait at the pace the server asks, be admitted by the ticker, pick a date and a
/// seat, hold, be told the balance is short, top up, pay, read the receipt; then
/// the operator page shows the sale and pauses admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_joins_waits_holds_tops_up_pays_and_the_operator_sees_the_sale() {
    let sb = Sandbox::new();
    let server = serve(&sb, &["--policy", "batch=1,every=300ms"]);
    admin(&server, "POST", "/v1/admin/queue/pause", None);
    for _ in 0..2 {
        let body = format!(r#"{{"user_id":"{}"}}"#, user());
        let (status, text) = http(&server.addr, "POST", "/v1/queue/tokens", &[], Some(&body));
        assert_eq!(status, 201, "{text}");
    }
    let url = server.url();
    assert!(
        server.banner.contains(&format!(
            "web page: {url}/ (the waiting room), {url}/admin (the operator's view)"
        )),
        "serve names the pages: {:?}",
        server.banner
    );
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path(), 1000, 1400).await;

    c.goto(&format!("{url}/")).await.expect("open the page");
    until(&c, "the join button", &visible("view-join")).await;
    shot(&c, "purchase-01-join").await;
    c.find(Locator::Id("join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&c, "the waiting room", &visible("view-wait")).await;
    until(
        &c,
        "place 3, paused",
        "return document.getElementById('position').textContent === '3'
            && !document.getElementById('paused').hidden",
    )
    .await;
    assert_eq!(text(&c, "ahead").await, "2");
    assert_eq!(text(&c, "eta").await, "paused");
    shot(&c, "purchase-02-waiting-paused").await;
    check_accessible(&c, "the waiting room").await;
    check_no_shift(
        &c,
        "the waiting room",
        &[
            ("position", "12,345"),
            ("ahead", "12,344"),
            ("eta", "about 25 min"),
        ],
        &[
            "position",
            "ahead",
            "eta",
            "progress",
            "paused",
            "wait-note",
        ],
    )
    .await;

    // A reload keeps the place: the same token, no new place issued.
    let token = js(&c, "return localStorage.getItem('booking.token')").await;
    assert!(token.as_str().is_some_and(|t| !t.is_empty()), "{token}");
    c.refresh().await.expect("reload");
    until(
        &c,
        "place 3 after the reload",
        "return !document.getElementById('view-wait').hidden
            && document.getElementById('position').textContent === '3'",
    )
    .await;
    assert_eq!(
        js(&c, "return localStorage.getItem('booking.token')").await,
        token
    );
    assert_eq!(admin(&server, "GET", "/v1/admin/queue", None)["issued"], 3);
    shot(&c, "purchase-03-after-reload").await;

    // The server pushes updates (GET /v1/queue/events): the page waits on them
    // and makes no status poll.
    js(&c, RECORD_POLLS).await;
    until(
        &c,
        "pushed updates",
        "return document.getElementById('wait-note').textContent.includes('as they happen')",
    )
    .await;

    assert_eq!(
        js(&c, "return window.__polls.length").await,
        json!(0),
        "no status poll while the server pushes updates"
    );
    // The ticker admits: first the two ahead, then this person, told by a push.
    // In the shop, one status request learns when the session ends.
    admin(&server, "POST", "/v1/admin/queue/resume", None);
    until(&c, "the shop", &visible("view-shop")).await;
    let polls = js(&c, "return window.__polls.length").await;
    assert!(polls.as_u64().is_some_and(|n| n <= 1), "{polls}");
    until(
        &c,
        "the seat map",
        "return document.querySelectorAll('#seats button.seat').length === 50",
    )
    .await;

    // Pick the second date of the first concert.
    let dates = js(
        &c,
        "return [...document.getElementById('date').options].map(o => o.value)",
    )
    .await;
    let date = dates[1].as_str().expect("a second date").to_owned();
    let first_map = js(
        &c,
        "return document.getElementById('seats').dataset.scheduleId",
    )
    .await;
    c.find(Locator::Id("date"))
        .await
        .unwrap()
        .select_by_value(&date)
        .await
        .expect("pick the date");
    until(
        &c,
        "the second date's seat map",
        &format!(
            "return document.getElementById('seats').dataset.scheduleId !== {first_map}
                && document.querySelectorAll('#seats button.seat').length === 50"
        ),
    )
    .await;
    shot(&c, "purchase-04-seat-map").await;
    check_accessible(&c, "the shop").await;
    check_no_shift(
        &c,
        "the shop",
        &[("session-left", "9:59"), ("balance", "1,000,000")],
        &[
            "session-left",
            "concert",
            "date",
            "seats",
            "holds",
            "topup",
            "pay",
        ],
    )
    .await;

    // Hold seat 12.
    c.find(Locator::Css("#seats button[data-seat='12']"))
        .await
        .unwrap()
        .click()
        .await
        .expect("click seat 12");
    until(
        &c,
        "the hold on seat 12",
        "return !!document.querySelector('#holds li.held[data-seat=\"12\"]')",
    )
    .await;
    until(
        &c,
        "seat 12 drawn as mine",
        "return document.querySelector('#seats [data-seat=\"12\"]').dataset.state === 'mine'",
    )
    .await;
    assert!(text(&c, "notice").await.contains("Seat 12 is yours"));
    assert_eq!(sales_on(&server, &date)["seats_held"], 1);
    shot(&c, "purchase-05-held").await;

    // A second and a third hold: this server pays several holds in one payment,
    // so each new hold is ticked too; the third is then let go and its seat is
    // free again.
    for seat in ["13", "14"] {
        c.find(Locator::Css(&format!("#seats button[data-seat='{seat}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(
            &c,
            &format!("the hold on seat {seat}"),
            &format!("return !!document.querySelector('#holds li.held[data-seat=\"{seat}\"]')"),
        )
        .await;
    }
    let ticked = "return [...document.querySelectorAll('#holds input:checked')].map(i => i.closest('li').dataset.seat).sort()";
    assert_eq!(js(&c, ticked).await, json!(["12", "13", "14"]));
    assert_eq!(
        js(
            &c,
            "return document.getElementById('one-per-payment').hidden"
        )
        .await,
        json!(true)
    );
    c.find(Locator::Css("#holds li[data-seat='14'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "seat 14 let go",
        "return !document.querySelector('#holds li[data-seat=\"14\"]')
            && document.querySelector('#seats [data-seat=\"14\"]').dataset.state === 'free'",
    )
    .await;
    assert_eq!(sales_on(&server, &date)["seats_held"], 2);
    assert_eq!(js(&c, ticked).await, json!(["12", "13"]));
    assert_eq!(text(&c, "pay").await, "Pay 10,000 for 2 seats");

    // Paying with an empty balance is refused in words.
    c.find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&c, "not enough balance", &notice_has("Not enough balance")).await;
    shot(&c, "purchase-06-not-enough-balance").await;

    // Top up, then pay.
    let amount = c.find(Locator::Id("topup")).await.unwrap();
    amount.clear().await.unwrap();
    amount.send_keys("10000").await.unwrap();
    c.find(Locator::Id("topup-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the new balance",
        "return document.getElementById('balance').textContent === '10,000'",
    )
    .await;
    shot(&c, "purchase-07-topped-up").await;
    assert_eq!(text(&c, "pay").await, "Pay 10,000 for 2 seats");
    c.find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&c, "the receipt", &visible("view-receipt")).await;
    let rows = js(
        &c,
        "return [...document.querySelectorAll('#receipt-rows tr')].map(r => [...r.cells].map(td => td.textContent))",
    )
    .await;
    let rows = rows.as_array().expect("receipt rows");
    assert_eq!(rows.len(), 2, "both seats of the one payment: {rows:?}");
    assert_eq!(
        (rows[0][1].clone(), rows[1][1].clone()),
        (json!("12"), json!("13"))
    );
    for r in rows {
        assert_eq!(r[2], "5,000", "{rows:?}");
        assert!(r[0].as_str().unwrap().contains(&date), "{rows:?}");
    }
    assert_eq!(rows[0][3], rows[1][3], "one payment: {rows:?}");
    assert_eq!(text(&c, "receipt-balance").await, "0");
    shot(&c, "purchase-08-receipt").await;
    let row = sales_on(&server, &date);
    assert_eq!(
        (row["seats_sold"].clone(), row["revenue"].clone()),
        (json!(2), json!(10000))
    );

    // The receipt survives a reload (the token is spent).
    c.refresh().await.unwrap();
    until(&c, "the receipt after a reload", &visible("view-receipt")).await;

    // The operator page: the key, the figures, the sale; pause from the page.
    c.goto(&format!("{url}/admin")).await.unwrap();
    until(&c, "the key form", &visible("view-key")).await;
    check_accessible(&c, "the operator sign-in").await;
    let key = c.find(Locator::Id("key")).await.unwrap();
    key.send_keys("not the key").await.unwrap();
    c.find(Locator::Css("#key-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&c, "a refused key", &notice_has("refused")).await;
    let key = c.find(Locator::Id("key")).await.unwrap();
    key.send_keys(ADMIN_KEY).await.unwrap();
    c.find(Locator::Css("#key-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&c, "the dashboard", &visible("view-dash")).await;
    until(
        &c,
        "the sale on the operator page",
        &format!(
            "const row = document.querySelector('table[data-concert=\"1\"] tr[data-date=\"{date}\"]');
             return !!row && row.querySelector('.sold').textContent === '2'
                 && row.querySelector('.revenue').textContent === '10,000'
                 && document.getElementById('revenue-total').textContent === '10,000'
                 && document.getElementById('q-issued').textContent === '3'"
        ),
    )
    .await;
    assert!(
        !js(&c, "return location.href")
            .await
            .as_str()
            .unwrap()
            .contains(ADMIN_KEY),
        "the key never goes into the URL"
    );
    shot(&c, "purchase-09-operator").await;
    check_accessible(&c, "the operator page").await;
    c.find(Locator::Id("pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "admission paused",
        "return document.getElementById('admission').textContent === 'paused'",
    )
    .await;
    assert_eq!(
        admin(&server, "GET", "/v1/admin/queue", None)["paused"],
        true
    );
    shot(&c, "purchase-10-operator-paused").await;
    c.close().await.expect("close the browser");
}

/// Two browsers press the same free seat at once: exactly one holds it, the
/// other is told it was taken and holds another seat (with the keyboard, at phone
/// width).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_race_for_one_seat_and_the_loser_picks_another() {
    let sb = Sandbox::new();
    let server = serve(&sb, &["--policy", "batch=10,every=100ms"]);
    let driver = Driver::start();
    let (pa, pb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = tokio::join!(
        driver.browser(pa.path(), 1000, 900),
        driver.browser(pb.path(), 390, 844)
    );
    let url = format!("{}/", server.url());
    tokio::join!(join_and_enter(&a, &url), join_and_enter(&b, &url));
    assert_eq!(
        js(&b, "return window.innerWidth").await,
        json!(390),
        "b has a phone's width"
    );
    shot(&b, "race-01-phone-seat-map").await;
    check_accessible(&b, "the shop at phone width").await;
    let date = js(&a, "return document.getElementById('date').value").await;
    assert_eq!(
        date,
        js(&b, "return document.getElementById('date').value").await
    );
    let date = date.as_str().unwrap().to_owned();

    // Press the same seat in both at once; if one page had already learnt that
    // the seat was taken (its map refreshes every few seconds), try the next one.
    let mut outcome = None;
    for seat in [7, 17, 27] {
        let press = format!(
            "const b = document.querySelector('#seats [data-seat=\"{seat}\"]');
             const free = !b.disabled; b.click(); return free;"
        );
        let (fa, fb) = tokio::join!(js(&a, &press), js(&b, &press));
        if fa != json!(true) || fb != json!(true) {
            continue;
        }
        let holds_expr =
            format!("!!document.querySelector('#holds li.held[data-seat=\"{seat}\"]')");
        let taken_expr = format!(
            "document.getElementById('notice').textContent.includes('Seat {seat} was just taken')"
        );
        let settled = format!("return ({holds_expr}) || ({taken_expr})");
        let (holds, taken) = (
            format!("return {holds_expr}"),
            format!("return {taken_expr}"),
        );
        tokio::join!(
            until(&a, "a's answer", &settled),
            until(&b, "b's answer", &settled)
        );
        let a_holds = js(&a, &holds).await == json!(true);
        let b_holds = js(&b, &holds).await == json!(true);
        let a_told = js(&a, &taken).await == json!(true);
        let b_told = js(&b, &taken).await == json!(true);
        assert!(
            (a_holds && b_told && !b_holds && !a_told)
                || (b_holds && a_told && !a_holds && !b_told),
            "exactly one holds seat {seat} and the other is told it was taken: \
             a holds {a_holds}, told {a_told}; b holds {b_holds}, told {b_told}"
        );
        assert_eq!(sales_on(&server, &date)["seats_held"], 1);
        outcome = Some((seat, a_holds));
        break;
    }
    let (seat, a_won) = outcome.expect("a race for one seat happened");
    let (winner, loser) = if a_won { (&a, &b) } else { (&b, &a) };
    shot(winner, "race-02-winner").await;
    shot(loser, "race-03-loser-told-taken").await;
    until(
        loser,
        "the taken seat drawn as held",
        &format!("return document.querySelector('#seats [data-seat=\"{seat}\"]').dataset.state === 'held'"),
    )
    .await;

    // The loser picks the next seat with the keyboard.
    let other = seat + 1;
    loser
        .find(Locator::Css(&format!("#seats button[data-seat='{other}']")))
        .await
        .unwrap()
        .send_keys("\u{e007}")
        .await
        .expect("press Enter on a seat");
    until(
        loser,
        "the loser's hold on the next seat",
        &format!("return !!document.querySelector('#holds li.held[data-seat=\"{other}\"]')"),
    )
    .await;
    until(
        loser,
        "the keyboard focus on the new hold",
        &format!(
            "const li = document.activeElement && document.activeElement.closest('#holds li');
             return !!li && li.dataset.seat === '{other}'"
        ),
    )
    .await;
    shot(loser, "race-04-loser-holds-another").await;
    assert_eq!(sales_on(&server, &date)["seats_held"], 2);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A hold left unpaid past its TTL (2 s here) shows "expired", and the seat is
/// free again on the page and on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_left_to_expire_shows_expired_and_frees_the_seat() {
    let sb = Sandbox::new();
    let server = serve(
        &sb,
        &["--policy", "batch=10,every=100ms", "--hold-ttl", "2s"],
    );
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let c = driver.browser(profile.path(), 1000, 900).await;
    join_and_enter(&c, &format!("{}/", server.url())).await;
    let date = js(&c, "return document.getElementById('date').value").await;
    let date = date.as_str().unwrap().to_owned();
    c.find(Locator::Css("#seats button[data-seat='5']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the hold on seat 5",
        "return !!document.querySelector('#holds li[data-seat=\"5\"]')",
    )
    .await;
    shot(&c, "expiry-01-held").await;
    until(
        &c,
        "the hold shown expired",
        "return !!document.querySelector('#holds li.expired[data-seat=\"5\"]')",
    )
    .await;
    until(&c, "the expiry notice", &notice_has("expired")).await;
    until(
        &c,
        "seat 5 free again",
        "return document.querySelector('#seats [data-seat=\"5\"]').dataset.state === 'free'",
    )
    .await;
    assert_eq!(
        text(&c, "pay").await,
        "Pay (select a hold)",
        "an expired hold cannot be paid"
    );
    let row = sales_on(&server, &date);
    assert_eq!(
        (row["seats_held"].clone(), row["seats_free"].clone()),
        (json!(0), json!(50))
    );
    shot(&c, "expiry-02-expired-and-free").await;
    c.close().await.unwrap();
}

/// Where the server pushes updates, the page waits on them without polling, and
/// after a lost connection reconnects and goes on waiting in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pushed_updates_the_page_does_not_poll_and_resumes_after_a_lost_connection() {
    let sb = Sandbox::new();
    let server = serve(&sb, &["--policy", "batch=1,every=300ms"]);
    admin(&server, "POST", "/v1/admin/queue/pause", None);
    let body = format!(r#"{{"user_id":"{}"}}"#, user());
    let (status, text_) = http(&server.addr, "POST", "/v1/queue/tokens", &[], Some(&body));
    assert_eq!(status, 201, "{text_}");
    let proxy = EventProxy::start(&server.addr, Events::Cut);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let c = driver.browser(profile.path(), 1000, 900).await;

    c.goto(&format!("{}/", proxy.url)).await.unwrap();
    until(&c, "the join button", &visible("view-join")).await;
    c.find(Locator::Id("join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "place 2, paused",
        "return !document.getElementById('view-wait').hidden
            && document.getElementById('position').textContent === '2'
            && !document.getElementById('paused').hidden",
    )
    .await;
    // The first stream was cut after its first event: the page opens another.
    until_count("a second event stream", &proxy.shared.streams, 2).await;
    until(
        &c,
        "pushed updates after the reconnect",
        "return document.getElementById('wait-note').textContent.includes('as they happen')
            && document.getElementById('position').textContent === '2'",
    )
    .await;
    shot(&c, "events-01-waiting-on-pushed-updates").await;
    assert_eq!(
        proxy.shared.status_polls.load(Ordering::SeqCst),
        0,
        "no status poll while the server pushes updates"
    );

    admin(&server, "POST", "/v1/admin/queue/resume", None);
    until(&c, "the shop", &visible("view-shop")).await;
    until(
        &c,
        "the seat map",
        "return document.querySelectorAll('#seats button.seat').length === 50",
    )
    .await;
    shot(&c, "events-02-admitted").await;
    c.close().await.unwrap();
}

/// Polling (the proxy refuses the event stream, as a server without it would), the
/// page asks again exactly at the pace each answer asks; a lost connection is
/// retried with a growing pause and the wait resumes in the same place once the
/// network is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_after_a_lost_connection() {
    let sb = Sandbox::new();
    let server = serve(&sb, &["--policy", "batch=1,every=300ms"]);
    admin(&server, "POST", "/v1/admin/queue/pause", None);
    let body = format!(r#"{{"user_id":"{}"}}"#, user());
    let (status, text_) = http(&server.addr, "POST", "/v1/queue/tokens", &[], Some(&body));
    assert_eq!(status, 201, "{text_}");
    let proxy = EventProxy::start(&server.addr, Events::Refused);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let c = driver.browser(profile.path(), 1000, 900).await;

    c.goto(&format!("{}/", proxy.url)).await.unwrap();
    until(&c, "the join button", &visible("view-join")).await;
    c.find(Locator::Id("join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "place 2, polling",
        "return document.getElementById('position').textContent === '2'
            && document.getElementById('wait-note').textContent.startsWith('Next update')",
    )
    .await;

    // The page asks again exactly when each answer says, never sooner.
    js(&c, RECORD_POLLS).await;
    until(
        &c,
        "four status polls",
        "return window.__polls.filter(p => p.done).length >= 4",
    )
    .await;
    let polls = js(&c, "return window.__polls.filter(p => p.done)").await;
    let polls = polls.as_array().expect("polls");
    for pair in polls.windows(2) {
        let asked = pair[0]["after"].as_f64().expect("poll_after_ms");
        assert!(
            asked >= 250.0,
            "the server asks for at least 250 ms: {pair:?}"
        );
        let waited = pair[1]["at"].as_f64().unwrap() - pair[0]["done"].as_f64().unwrap();
        assert!(
            waited >= asked - 1.0,
            "the page asked again after {waited:.0} ms, the server asked for {asked} ms"
        );
    }
    proxy.set_down(true);
    until(
        &c,
        "the lost connection told",
        "return document.getElementById('wait-note').textContent.startsWith('Connection lost')
            && document.getElementById('position').textContent === '2'",
    )
    .await;
    shot(&c, "lost-01-connection-lost").await;
    let polls_while_down = proxy.shared.status_polls.load(Ordering::SeqCst);
    proxy.set_down(false);
    until(
        &c,
        "polling again",
        "return document.getElementById('wait-note').textContent.startsWith('Next update')
            && document.getElementById('position').textContent === '2'",
    )
    .await;
    assert!(
        proxy.shared.status_polls.load(Ordering::SeqCst) > polls_while_down,
        "the page asked again once the network was back"
    );
    admin(&server, "POST", "/v1/admin/queue/resume", None);
    until(&c, "the shop", &visible("view-shop")).await;
    shot(&c, "lost-02-admitted").await;
    c.close().await.unwrap();
}
