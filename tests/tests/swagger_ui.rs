//! Swagger UI in a real browser: headless Chromium (Debian's `chromium` package, nothing
//! downloaded at run time) loads the BFF's `/docs`, the page lists the API's operations,
//! and a "Try it out" register call made from the page answers 201; the user can then log
//! in. A screenshot of the page after the call is written to `target/screenshots/`.
//!
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`), or `CHROMIUM=/path/to/it`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Input;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::Runtime::RemoteObject;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{json, Value};
use tests::stack::{Service, Stack};
use uuid::Uuid;

const PASSWORD: &str = "a long and unusual passphrase 42";
const WAIT: Duration = Duration::from_secs(30);

/// The operations a user must find on the page, as (method, path).
const EXPECTED_OPERATIONS: [(&str, &str); 5] = [
    ("POST", "/api/v1/register"),
    ("POST", "/api/v1/auth/login"),
    ("GET", "/api/v1/protected/profile"),
    ("GET", "/api/v1/protected/admin/dashboard"),
    ("POST", "/api/v1/protected/admin/outbox/replay"),
];

fn chromium_path() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        path.exists(),
        "{} is missing: install Debian's browser (`apt-get install -y chromium`)",
        path.display()
    );
    path
}

/// Each run writes its screenshot under `target/`; the copy in `tests/screenshots/` (shown
/// in the README) is refreshed from it by hand, so a test run leaves the tree clean.
fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/screenshots")
        .join("swagger-ui.png")
}

/// A fresh headless Chromium with an empty profile; the flags keep it from calling home
/// (the closed network here refuses those connections).
fn launch(profile: PathBuf) -> anyhow::Result<Browser> {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium_path()))
        .headless(true)
        .sandbox(false)
        .enable_gpu(false)
        .user_data_dir(Some(profile))
        .window_size(Some((1280, 2000)))
        .idle_browser_timeout(Duration::from_secs(120))
        .args(args)
        .build()?;
    Browser::new(options)
}

/// The page's console errors, exceptions and log entries (a CSP refusal shows up here).
fn collect_console(tab: &Tab) -> anyhow::Result<Arc<Mutex<Vec<String>>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tab.enable_log()?;
    tab.enable_runtime()?;
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let line = match event {
            Event::LogEntryAdded(e) => Some(format!(
                "log {:?}: {}",
                e.params.entry.level, e.params.entry.text
            )),
            Event::RuntimeExceptionThrown(e) => Some(format!(
                "exception: {} {}",
                e.params.exception_details.text,
                e.params
                    .exception_details
                    .exception
                    .as_ref()
                    .and_then(|x| x.description.clone())
                    .unwrap_or_default()
            )),
            Event::RuntimeConsoleAPICalled(e) => Some(format!(
                "console.{:?}: {}",
                e.params.Type,
                e.params
                    .args
                    .iter()
                    .map(|a| a
                        .value
                        .as_ref()
                        .map(|v| v.to_string())
                        .or_else(|| a.description.clone())
                        .unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            _ => None,
        };
        if let Some(line) = line {
            sink.lock().expect("console lines").push(line);
        }
    }))?;
    Ok(lines)
}

fn value(object: RemoteObject) -> Value {
    object.value.unwrap_or(Value::Null)
}

/// What the page showed: the operations listed (method, path), then the response status
/// and body shown after "Execute".
type Seen = (Vec<(String, String)>, String, String);

/// What the user does on the page.
fn try_register_in_browser(
    docs_url: &str,
    body: &str,
    console: &mut Option<Arc<Mutex<Vec<String>>>>,
) -> anyhow::Result<Seen> {
    let profile =
        std::env::temp_dir().join(format!("swagger-ui-chromium-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&profile)?;
    let result = (|| {
        let browser = launch(profile.clone())?;
        let tab = browser.new_tab()?;
        tab.set_default_timeout(WAIT);
        *console = Some(collect_console(&tab)?);

        tab.navigate_to(docs_url)?.wait_until_navigated()?;
        tab.wait_for_element(".opblock .opblock-summary-path")?;
        let listed = value(tab.evaluate(
            r#"JSON.stringify(Array.from(document.querySelectorAll('.opblock')).map(op => [
                op.querySelector('.opblock-summary-method').innerText.trim(),
                op.querySelector('.opblock-summary-path').getAttribute('data-path')]))"#,
            false,
        )?);
        let listed: Vec<(String, String)> = serde_json::from_str(listed.as_str().unwrap_or("[]"))?;

        // Expand the register operation and try it out.
        tab.wait_for_element(r#".opblock-summary-path[data-path="/api/v1/register"]"#)?
            .click()?;
        let open = r#".opblock.is-open:has(.opblock-summary-path[data-path="/api/v1/register"])"#;
        tab.wait_for_element(&format!("{open} .try-out__btn"))?
            .click()?;
        let textarea = tab.wait_for_element(&format!("{open} textarea.body-param__text"))?;
        textarea.click()?;
        textarea.call_js_fn("function() { this.select(); }", vec![], false)?;
        tab.call_method(Input::InsertText {
            text: body.to_owned(),
        })?;
        let typed =
            value(textarea.call_js_fn("function() { return this.value; }", vec![], false)?);
        anyhow::ensure!(
            typed.as_str() == Some(body),
            "the textarea holds {typed} instead of the body"
        );
        tab.wait_for_element(&format!("{open} button.execute"))?
            .click()?;

        let status = tab
            .wait_for_element(&format!(
                "{open} .live-responses-table .response .response-col_status"
            ))?
            .get_inner_text()?;
        let shown = tab
            .find_element(&format!(
                "{open} .live-responses-table .response .response-col_description"
            ))
            .and_then(|e| e.get_inner_text())
            .unwrap_or_default();

        // The screenshot: the register operation from its top, with the call's response.
        tab.evaluate(
            &format!("document.querySelector('{open}').scrollIntoView({{block: 'start'}}); window.scrollBy(0, -8);"),
            false,
        )?;
        std::thread::sleep(Duration::from_millis(300));
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)?;
        let path = screenshot_path();
        std::fs::create_dir_all(path.parent().expect("screenshots dir"))?;
        std::fs::write(&path, png)?;
        Ok((listed, status.trim().to_owned(), shown))
    })();
    let _ = std::fs::remove_dir_all(&profile);
    result
}

#[tokio::test]
async fn swagger_ui_lists_the_operations_and_a_try_it_out_registration_succeeds(
) -> anyhow::Result<()> {
    let stack = Stack::start_all().await?;
    let tag = Uuid::new_v4().simple().to_string();
    let email = format!("grace.{}@example.com", &tag[..12]);
    let body = serde_json::to_string_pretty(&json!({
        "email": email,
        "password": PASSWORD,
        "first_name": "Grace",
        "last_name": "Hopper",
    }))?;

    let docs_url = stack.url(Service::Bff, "/docs");
    let (outcome, console) = tokio::task::spawn_blocking(move || {
        let mut console = None;
        let outcome = try_register_in_browser(&docs_url, &body, &mut console);
        let console = console
            .map(|c| c.lock().expect("console lines").clone())
            .unwrap_or_default();
        (outcome, console)
    })
    .await?;
    let console = console.join("\n");
    let (listed, status, shown) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => anyhow::bail!("in the browser: {error:#}\nconsole:\n{console}"),
    };

    for (method, path) in EXPECTED_OPERATIONS {
        assert!(
            listed.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is not on the page; listed: {listed:?}\nconsole:\n{console}"
        );
    }
    assert_eq!(
        status, "201",
        "the page shows status {status}: {shown}\nconsole:\n{console}"
    );
    assert!(
        shown.contains(&email),
        "the response shown does not echo the user: {shown}"
    );

    // The user exists: it can log in.
    let credentials = json!({ "email": email, "password": PASSWORD });
    let login = stack.bff_post("/api/v1/auth/login", &credentials).await?;
    assert_eq!(
        login.status(),
        200,
        "login after the browser registration: {}",
        login.text().await?
    );
    let tokens: Value = login.json().await?;
    assert_eq!(tokens["token_type"], "Bearer");
    Ok(())
}
