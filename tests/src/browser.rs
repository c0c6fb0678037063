//! A real headless browser for the console tests: Debian's `chromium` driven by its
//! `chromedriver` over WebDriver ([`fantoccini`]). Each [`Browser`] starts its own driver on a
//! free port with a fresh profile, records the page's console messages and network requests
//! (Chrome's `browser` and `performance` logs), and stops both when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};

/// The binaries, if installed (`chromium`, `chromedriver`).
pub fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            let out = Command::new("sh").arg("-c").arg(format!("command -v {n}")).output().ok()?;
            let p = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (!p.is_empty()).then(|| PathBuf::from(p))
        })
    };
    Some((find(&["chromium", "chromium-browser", "google-chrome"])?, find(&["chromedriver"])?))
}

/// A headless browser session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// `POST /session/{id}/se/log`: chromedriver's log of one kind since the last call.
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(serde_json::json!({ "type": self.0 }).to_string()))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and a headless chromium; `None` when they are not installed.
    pub async fn start() -> Option<Browser> {
        let (chromium, driver_bin) = tools()?;
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,860", "--no-first-run", "--disable-extensions",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--metrics-recording-only", "--disable-default-apps",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => return Some(Browser { client, driver, _profile: profile }),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last:?}");
    }

    /// The element, once it is there (at most 10 s).
    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        let found = self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css));
        match found.await {
            Ok(el) => el,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                let page: String = page.chars().take(3000).collect();
                panic!("{css} did not appear: {e}\npage: {page}")
            }
        }
    }

    /// Waits until no element matches `css` (at most 10 s).
    pub async fn wait_gone(&self, css: &str) {
        for _ in 0..100 {
            if self.client.find_all(Locator::Css(css)).await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} is still there");
    }

    /// Waits until the text of `css` contains `want` (at most 10 s); returns it.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                text = el.text().await.unwrap_or_default();
                if text.contains(want) {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never said {want:?} (last: {text:?})");
    }

    /// Types into a field (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Clicks an element.
    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.unwrap();
    }

    /// Console messages of level WARNING or SEVERE since the last call: script errors, CSP
    /// violations, failed loads. Chrome also logs every 4xx answer as an error ("Failed to load
    /// resource: the server responded with a status of 4.."); those are API answers the page
    /// handles (a refused sign-in, a step-up asked for) and are left out; 5xx answers are not.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(GetLog("browser")).await.expect("browser log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE") | Some("WARNING")))
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .filter(|m| !m.contains("the server responded with a status of 4"))
            .collect()
    }

    /// The network URLs (http, https, ws, wss) requested since the last call; the browser's
    /// own `chrome://` pages are not network requests and are left out.
    pub async fn requests(&self) -> Vec<String> {
        let log = self.client.issue_cmd(GetLog("performance")).await.expect("performance log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| m["message"]["params"]["request"]["url"].as_str().map(str::to_owned))
            .filter(|u| ["http://", "https://", "ws://", "wss://"].iter().any(|s| u.starts_with(s)))
            .collect()
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }
}

impl Browser {
    /// Ends the WebDriver session (chromedriver closes chromium) and stops the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A test that failed before `close`: its chromium is found by its private profile.
        let _ = Command::new("pkill").arg("-f").arg(self._profile.path()).status();
    }
}
