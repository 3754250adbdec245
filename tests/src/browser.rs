//! A real browser for the dashboard's pages: Debian's `chromedriver` on a
//! free loopback port driving headless `chromium`, through WebDriver.
//!
//! The calls are blocking, like the rest of the harness: [`Browser`] owns a
//! small tokio runtime and waits on each WebDriver command. Every wait has a
//! deadline and polls the page; none sleeps and hopes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{free_port, wait_until};

/// Where Debian's `chromium-driver` and `chromium` put them, else on PATH.
const CHROMEDRIVER: &str = "chromedriver";
const CHROMIUM: &str = "chromium";
/// How long one WebDriver command may take on a slow, busy machine.
const COMMAND: Duration = Duration::from_secs(60);
/// How often the waits look at the page again.
const POLL: Duration = Duration::from_millis(100);

/// Headless chromium under chromedriver, in a fresh profile.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    dir: TempDir,
}

impl Browser {
    /// A browser whose window is `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let (Some(chromedriver), Some(chromium)) = (program(CHROMEDRIVER), program(CHROMIUM))
        else {
            panic!(
                "chromium or chromedriver is missing: run scripts/setup test (it installs chromium and chromium-driver)"
            );
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("log");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            // Its own process group: dropping the browser ends chromium too,
            // even when the session could not be closed.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut browser = Browser {
            runtime,
            client: None,
            driver,
            dir,
        };
        wait_until("chromedriver listens", COMMAND, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser.dir.path().join("profile").display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = browser.block(async {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(capabilities);
            builder.connect(&url).await
        });
        match client {
            Ok(client) => browser.client = Some(client),
            Err(error) => panic!(
                "chromedriver could not start chromium: {error}\n{}",
                browser.driver_log()
            ),
        }
        browser.set_viewport(width, height);
        browser
    }

    /// Runs one WebDriver exchange to its end, or panics after [`COMMAND`].
    fn block<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(async {
            tokio::time::timeout(COMMAND, future)
                .await
                .unwrap_or_else(|_| panic!("a WebDriver command took over {COMMAND:?}"))
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// What chromedriver wrote, to explain a failure.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Makes the page area (`innerWidth` × `innerHeight`) exactly this size:
    /// the window's frame takes some room that headless chromium reports.
    pub fn set_viewport(&self, width: u32, height: u32) {
        self.block(self.client().set_window_size(width, height))
            .expect("set the window size");
        let inner = self.script("return [window.innerWidth, window.innerHeight];");
        let (inner_w, inner_h) = (
            inner[0].as_u64().unwrap_or(0) as u32,
            inner[1].as_u64().unwrap_or(0) as u32,
        );
        if (inner_w, inner_h) != (width, height) && inner_w > 0 && inner_h > 0 {
            let grow_w = width + width.saturating_sub(inner_w);
            let grow_h = height + height.saturating_sub(inner_h);
            self.block(self.client().set_window_size(grow_w, grow_h))
                .expect("set the window size");
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub fn goto(&self, url: &str) {
        self.block(self.client().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The address of the page shown.
    pub fn current_url(&self) -> String {
        self.block(self.client().current_url())
            .expect("current url")
            .to_string()
    }

    /// Runs `body` as a function in the page and returns what it returns.
    pub fn script(&self, body: &str) -> Value {
        self.block(self.client().execute(body, Vec::new()))
            .unwrap_or_else(|e| panic!("script {body:?}: {e}"))
    }

    /// Whether an element matches `css` now.
    pub fn exists(&self, css: &str) -> bool {
        self.count(css) > 0
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        self.block(self.client().find_all(Locator::Css(css)))
            .map(|found| found.len())
            .unwrap_or(0)
    }

    /// The visible text of the first element matching `css`, once there is
    /// one (waiting up to `wait`).
    pub fn text(&self, css: &str, wait: Duration) -> String {
        let mut text = None;
        self.wait_for(&format!("an element {css}"), wait, |browser| {
            text = browser.text_now(css);
            text.is_some()
        });
        text.expect("found")
    }

    /// The visible text of the first element matching `css`, if any.
    pub fn text_now(&self, css: &str) -> Option<String> {
        self.block(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    /// Attribute `name` of the first element matching `css`, if any.
    pub fn attr_now(&self, css: &str, name: &str) -> Option<String> {
        self.block(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.attr(name).await.ok().flatten()
        })
    }

    /// Waits until the first element matching `css` has text `wanted`.
    pub fn wait_for_text(&self, css: &str, wanted: &str, wait: Duration) {
        let mut seen = None;
        let what = format!("{css} to read {wanted:?}");
        self.wait_for(&what, wait, |browser| {
            seen = browser.text_now(css);
            seen.as_deref() == Some(wanted)
        });
    }

    /// Polls `condition` until it holds; at the deadline panics with what
    /// was awaited and the page's address and text.
    pub fn wait_for(
        &self,
        what: &str,
        wait: Duration,
        mut condition: impl FnMut(&Browser) -> bool,
    ) {
        let deadline = Instant::now() + wait;
        while !condition(self) {
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {wait:?} waiting for {what}\npage {}:\n{}",
                    self.current_url(),
                    self.text_now("body").unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Opens `url` again and again until `condition` holds there: for a
    /// page drawn once on the server, whose content comes later.
    pub fn wait_for_page(
        &self,
        url: &str,
        what: &str,
        wait: Duration,
        mut condition: impl FnMut(&Browser) -> bool,
    ) {
        self.wait_for(what, wait, |browser| {
            browser.goto(url);
            condition(browser)
        });
    }

    /// Clicks the first element matching `css`, once there is one.
    pub fn click(&self, css: &str, wait: Duration) {
        self.wait_for(&format!("an element {css} to click"), wait, |b| {
            b.exists(css)
        });
        self.block(async {
            let element = self.client().find(Locator::Css(css)).await?;
            element.click().await
        })
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub fn fill(&self, css: &str, text: &str, wait: Duration) {
        self.wait_for(&format!("a field {css}"), wait, |b| b.exists(css));
        self.block(async {
            let element = self.client().find(Locator::Css(css)).await?;
            element.clear().await?;
            element.send_keys(text).await
        })
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The page's width beyond the window, in CSS pixels (0: it fits).
    pub fn horizontal_overflow(&self) -> i64 {
        let widths =
            self.script("return [document.documentElement.scrollWidth, window.innerWidth];");
        widths[0].as_i64().unwrap_or(0) - widths[1].as_i64().unwrap_or(0)
    }

    /// Elements wider than the window, to explain an overflow.
    pub fn too_wide(&self) -> Value {
        self.script(
            "var out = []; document.querySelectorAll('body *').forEach(function (e) {
               var r = e.getBoundingClientRect();
               if (r.right > window.innerWidth + 0.5) out.push(e.tagName.toLowerCase() +
                 (e.id ? '#' + e.id : '') + (e.className && e.className.baseVal === undefined ? '.' + e.className : '') +
                 ' right=' + Math.round(r.right));
             }); return out.slice(0, 20);",
        )
    }

    /// A PNG of the whole page, cropped to its content: the window is made
    /// as tall as the page for the picture, then put back.
    pub fn screenshot_page(&self, path: &Path) {
        let size = self.script(
            "return [window.innerWidth, window.innerHeight,
                     Math.ceil(document.body.getBoundingClientRect().height)];",
        );
        let width = size[0].as_u64().unwrap_or(1280) as u32;
        let height = size[1].as_u64().unwrap_or(800) as u32;
        let content = size[2].as_u64().unwrap_or(800).max(200) as u32;
        self.set_viewport(width, content);
        let png = self.block(self.client().screenshot()).expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.set_viewport(width, height);
    }
}

/// `/usr/bin/NAME`, or the first NAME on PATH.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // The whole group: chromedriver and any chromium it left behind.
        // SAFETY: kill(2) on the group this struct started; no memory involved.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
