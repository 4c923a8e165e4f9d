//! Headless Chromium driven through chromedriver (WebDriver), and a small
//! cookie-keeping HTTP client for requests a browser would not send.

use fantoccini::{Client, ClientBuilder, Locator};
use pglab::stack::process::free_port;
use std::path::PathBuf;
use std::time::Duration;

pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    pub base: String,
}

/// Where the screenshots of a test go (kept as test artefacts).
pub fn screenshot_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

impl Browser {
    pub async fn start(base: &str, test: &str) -> Self {
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (apt-get install chromium-driver)");
        let profile = tempfile::tempdir().expect("profile dir");
        // The flags keep Chromium off the network: this machine has none.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        driver,
                        _profile: profile,
                        shots: screenshot_dir(test),
                        base: base.to_string(),
                    }
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromedriver does not answer: {last:?}");
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.expect(css);
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    /// Sets a (large) field's value directly; typing 2 kB of YAML key by key
    /// is slow and fights the textarea's auto-indentation.
    pub async fn set_value(&self, css: &str, text: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![css.into(), text.into()],
            )
            .await
            .expect("set value");
    }

    /// Clicks a link or submit button and waits for the next page to load.
    pub async fn click(&self, css: &str) {
        self.client
            .execute("window.pglabOldPage = true;", vec![])
            .await
            .expect("mark page");
        self.client
            .find(Locator::Css(css))
            .await
            .expect(css)
            .click()
            .await
            .expect("click");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let loaded = self
                .client
                .execute(
                    "return window.pglabOldPage === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .unwrap_or_default();
            if loaded == serde_json::json!(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css}: no new page within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Waits until `css` holds `want`, without navigating.
    pub async fn wait_text(&self, css: &str, want: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if got.contains(want) || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether the page fits the window's width (nothing scrolls sideways
    /// but elements meant to, like the board's grid).
    pub async fn fits_width(&self) -> bool {
        self.client
            .execute(
                "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("widths")
            == serde_json::json!(true)
    }

    pub async fn login(&self, user: &str, password: &str) {
        self.goto("/login").await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("form button[type=submit]").await;
    }

    pub async fn logout(&self) {
        self.click("header form.who button").await;
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        let mut driver = self.driver;
        let _ = driver.kill().await;
    }
}

/// An HTTP client that keeps the session cookie by hand, for requests a
/// browser page would not make (forged forms, other students' pages).
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
    pub cookies: Vec<(String, String)>,
}

impl Http {
    pub fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            cookies: vec![],
        }
    }

    /// A client whose requests come from another loopback address (a
    /// second machine in the classroom).
    pub fn from_address(base: &str, address: [u8; 4]) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(Some(std::net::IpAddr::from(address)))
                .build()
                .expect("client"),
            base: base.to_string(),
            cookies: vec![],
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some((kv, _)) = v.to_str().unwrap_or("").split_once(';') else {
                continue;
            };
            if let Some((k, v)) = kv.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&r);
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .expect("POST");
        self.keep(&r);
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.text().await.unwrap_or_default();
        (status, location.unwrap_or(text))
    }

    pub async fn post_owned(&mut self, path: &str, form: &[(String, String)]) -> (u16, String) {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(path, &pairs).await
    }

    /// Logs in through the form, as a browser would; returns the status.
    pub async fn login(&mut self, user: &str, password: &str) -> (u16, String) {
        let (_, page) = self.get("/login").await;
        let token = hidden(&page, "token");
        self.post(
            "/login",
            &[
                ("username", user),
                ("password", password),
                ("token", &token),
            ],
        )
        .await
    }

    /// The CSRF token the pages of this session carry.
    pub async fn csrf(&mut self, page: &str) -> String {
        let (_, html) = self.get(page).await;
        hidden(&html, "csrf")
    }
}

/// The value of the hidden input `name` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split_once(&marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
