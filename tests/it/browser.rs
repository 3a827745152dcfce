//! A real browser for the web app's tests: headless Chromium driven through
//! chromedriver (fantoccini, rustls), one driver and profile per test.
//!
//! [`browse`] runs a test's steps; every page it sees is photographed, and
//! when a step fails the photographs are saved under
//! `target/browser-screenshots/<test>/` before the failure goes on. A
//! missing chromedriver fails the test with how to install it: nothing is
//! skipped silently.

use std::future::Future;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};

/// The flags Chromium needs on these machines (root, no GPU, small /dev/shm).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1200,900",
];

/// Where a failing test's screenshots go.
pub fn screenshot_dir(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/browser-screenshots")
        .join(test)
}

/// chromedriver and Chromium, started for one test.
struct Driver {
    process: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

fn chromium() -> Option<String> {
    std::env::var("CHROMIUM").ok().or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(str::to_owned)
    })
}

async fn start_driver() -> (Driver, Client) {
    // Two rustls backends are linked (the API client's and the driver's):
    // name one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let process = Command::new(chromedriver())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start chromedriver ({e}): the browser tests need Debian's chromium and \
                 chromium-driver; scripts/test.sh installs them (or: apt-get install chromium \
                 chromium-driver), or set CHROMEDRIVER to its path"
            )
        });
    let profile = std::env::temp_dir().join(format!("coursegen-chromium-{}", uuid::Uuid::new_v4()));
    let driver = Driver {
        process,
        profile: profile.clone(),
    };
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut options = json!({ "args": args });
    if let Some(binary) = chromium() {
        options["binary"] = Value::String(binary);
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return (driver, client),
            Err(e) if Instant::now() > deadline => {
                panic!("chromedriver on port {port} did not start a Chromium session: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A screenshot (PNG) and what the test was doing.
type Shot = (String, Vec<u8>);

/// The browser a test's steps drive; every page it loads is photographed.
#[derive(Clone)]
pub struct Browser {
    pub client: Client,
    shots: Arc<Mutex<Vec<Shot>>>,
}

impl Browser {
    /// Photographs the page as it is now.
    pub async fn shot(&self, label: &str) {
        if let Ok(png) = self.client.screenshot().await {
            self.shots.lock().unwrap().push((label.to_owned(), png));
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.shot(&format!("goto {}", path_of(url))).await;
    }

    /// The element `css` (waits up to 10 s for it).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Whether an element `css` is on the page now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// The text of `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Clicks `css` (a link or a button) and photographs what follows.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
        self.shot(&format!("click {css}")).await;
    }

    /// Types `text` into the field `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Waits (up to `timeout`) until `css` is on the page with a text that
    /// satisfies `ok`.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            // An element not yet on the page never passes: "no text yet"
            // is not the text a caller waits for.
            let now = match self.client.find(Locator::Css(css)).await {
                Ok(e) => Some(e.text().await.unwrap_or_default()),
                Err(_) => None,
            };
            if let Some(now) = now.as_deref().filter(|t| ok(t)) {
                return now.to_owned();
            }
            if Instant::now() > deadline {
                self.shot(&format!("timeout {css}")).await;
                panic!("{css} never got the expected text; last: {now:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// The current path (and query).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }
}

/// The path of `url`, without its query (which may hold a token).
fn path_of(url: &str) -> String {
    let path = url.splitn(4, '/').nth(3).unwrap_or("");
    format!("/{}", path.split('?').next().unwrap_or(""))
}

/// Runs `steps` in a fresh browser. When a step panics, the pages seen
/// (and the page at the failure) are saved as PNGs under
/// [`screenshot_dir`], then the panic goes on.
pub async fn browse<F, Fut>(test: &str, steps: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()>,
{
    let (driver, client) = start_driver().await;
    let browser = Browser {
        client: client.clone(),
        shots: Arc::default(),
    };
    let outcome = AssertUnwindSafe(steps(browser.clone()))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        browser.shot("failure").await;
        let dir = screenshot_dir(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (label, png)) in browser.shots.lock().unwrap().iter().enumerate() {
            let name: String = label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(60)
                .collect();
            let _ = std::fs::write(dir.join(format!("{i:02}-{name}.png")), png);
        }
        eprintln!("screenshots of the failing browser test: {}", dir.display());
        let _ = client.close().await;
        drop(driver);
        std::panic::resume_unwind(panic);
    }
    let _ = client.close().await;
    drop(driver);
}
