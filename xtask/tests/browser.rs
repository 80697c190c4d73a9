//! The report in a real browser: writes the full report with the built `xtask`, opens
//! its `index.html` from disk in headless Debian chromium (driven over the DevTools
//! protocol) at a phone size (390×844) and a desktop size (1400×900), and checks what a
//! reader gets: no sideways scrolling, every image and SVG drawn, no console errors,
//! figure text at 10 CSS px or more, prose lines of about 90 characters at most, and
//! every in-page link landing somewhere. Screenshots go to `target/browser-test/`.
//!
//! Needs `chromium` (Debian: `apt-get install -y chromium chromium-driver`; `.ci/run`
//! installs it). Run alone: `cargo test -p xtask --test browser -- --nocapture`.
//! `CHROME=/path/to/chromium` picks another build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions};

/// Smallest figure text a reader gets, CSS px.
const MIN_TEXT_PX: f64 = 10.0;
/// Longest prose line, in average characters of the body font.
const MAX_LINE_CHARS: f64 = 95.0;

/// The browser: `$CHROME`, else Debian's chromium.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROME") {
        return PathBuf::from(p);
    }
    for p in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "no chromium found: install it (Debian: apt-get install -y chromium chromium-driver; \
         .ci/run does this) or point CHROME at a Chrome/Chromium binary"
    );
}

/// What the page measures about itself (see `PROBE`).
#[derive(Debug)]
struct Probe {
    viewport: f64,
    page_width: f64,
    widest: String,
    svgs: usize,
    svgs_blank: usize,
    images: usize,
    images_broken: usize,
    figure_texts: usize,
    min_text_px: f64,
    min_text: String,
    line_chars: f64,
    line_where: String,
    links: usize,
    dangling: Vec<String>,
}

/// Runs in the page; returns a JSON object for `Probe`.
const PROBE: &str = r##"
(() => {
  const vw = document.documentElement.clientWidth;
  const pageWidth = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);
  // The element sticking out furthest, to name in a failure.
  let widest = '', right = 0;
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > right) { right = r.right; widest = el.tagName + (el.id ? '#' + el.id : '') + ' ' + (el.className && el.className.baseVal === undefined ? el.className : ''); }
  }
  const svgs = [...document.querySelectorAll('svg')];
  const svgsBlank = svgs.filter(s => { const r = s.getBoundingClientRect(); return !(r.width > 50 && r.height > 50) || s.querySelectorAll('*').length < 5; }).length;
  const imgs = [...document.images];
  const imagesBroken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  let minText = Infinity, minWhat = '', figureTexts = 0;
  for (const t of document.querySelectorAll('figure svg text')) {
    const m = t.getScreenCTM();
    if (!m) continue;
    figureTexts++;
    const px = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
    if (px < minText) { minText = px; minWhat = t.textContent; }
  }
  // Characters per line of prose: paragraph width over the body font's average letter.
  const canvas = document.createElement('canvas').getContext('2d');
  let lineChars = 0, lineWhere = '';
  for (const p of document.querySelectorAll('main p, main li, main td')) {
    const cs = getComputedStyle(p);
    canvas.font = cs.fontSize + ' ' + cs.fontFamily;
    const sample = 'the quick brown fox jumps over a lazy dog, measured in this run ';
    const avg = canvas.measureText(sample).width / sample.length;
    // A line is as wide as its box, or as its text if that is shorter.
    const box = p.getBoundingClientRect().width - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    const chars = Math.min(box, canvas.measureText(p.textContent).width) / avg;
    if (chars > lineChars) { lineChars = chars; lineWhere = p.textContent.slice(0, 60); }
  }
  const links = [...document.querySelectorAll('a[href^="#"]')];
  const dangling = links.map(a => a.getAttribute('href'))
    .filter(h => h.length < 2 || !document.getElementById(decodeURIComponent(h.slice(1))));
  return JSON.stringify({ viewport: vw, page_width: pageWidth, widest, svgs: svgs.length, svgs_blank: svgsBlank,
    images: imgs.length, images_broken: imagesBroken, figure_texts: figureTexts,
    min_text_px: minText, min_text: minWhat, line_chars: lineChars, line_where: lineWhere,
    links: links.length, dangling });
})()
"##;

fn probe(tab: &headless_chrome::Tab) -> Probe {
    let value = tab
        .evaluate(PROBE, false)
        .expect("probe runs")
        .value
        .expect("probe returns");
    let json: serde_json::Value =
        serde_json::from_str(value.as_str().expect("probe returns a string")).expect("probe JSON");
    let f = |k: &str| json[k].as_f64().unwrap_or(f64::NAN);
    let s = |k: &str| json[k].as_str().unwrap_or_default().to_string();
    Probe {
        viewport: f("viewport"),
        page_width: f("page_width"),
        widest: s("widest"),
        svgs: f("svgs") as usize,
        svgs_blank: f("svgs_blank") as usize,
        images: f("images") as usize,
        images_broken: f("images_broken") as usize,
        figure_texts: f("figure_texts") as usize,
        min_text_px: f("min_text_px"),
        min_text: s("min_text"),
        line_chars: f("line_chars"),
        line_where: s("line_where"),
        links: f("links") as usize,
        dangling: json["dangling"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default(),
    }
}

#[test]
fn the_page_reads_well_on_a_phone_and_a_desktop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-test");
    let report = root.join("report");
    let _ = std::fs::create_dir_all(&root);
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["report", "--out"])
        .arg(&report)
        .output()
        .expect("xtask runs");
    assert!(
        out.status.success(),
        "xtask report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = std::path::absolute(report.join("index.html")).expect("absolute path");
    let url = format!("file://{}", index.display());

    // A fresh profile each run (earlier ones removed); no network services, no sandbox
    // (CI runs as root).
    for old in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if old.file_name().to_string_lossy().starts_with("profile-") {
            let _ = std::fs::remove_dir_all(old.path());
        }
    }
    let profile = root.join(format!("profile-{}", std::process::id()));
    let args: Vec<&std::ffi::OsStr> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    let options = LaunchOptions {
        headless: false, // `--headless=new` above: the same renderer as a desktop chromium
        sandbox: false,
        path: Some(chromium()),
        user_data_dir: Some(profile.clone()),
        window_size: Some((1400, 900)),
        args,
        idle_browser_timeout: Duration::from_secs(120),
        ..LaunchOptions::default()
    };
    let browser = Browser::new(options).expect("chromium starts");
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(60));

    // Console errors and uncaught exceptions, collected from the protocol's events.
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&errors);
    tab.enable_runtime().expect("runtime events");
    tab.enable_log().expect("log events");
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let message = match event {
            Event::RuntimeConsoleAPICalled(e) if format!("{:?}", e.params.Type) == "Error" => Some(format!(
                "console.error: {:?}",
                e.params.args.first().and_then(|a| a.value.clone())
            )),
            Event::RuntimeExceptionThrown(e) => {
                Some(format!("exception: {}", e.params.exception_details.text))
            }
            Event::LogEntryAdded(e) if format!("{:?}", e.params.entry.level) == "Error" => {
                Some(format!("log: {} ({:?})", e.params.entry.text, e.params.entry.url))
            }
            _ => None,
        };
        if let (Some(m), Ok(mut list)) = (message, sink.lock()) {
            list.push(m);
        }
    }))
    .expect("listener");

    let mut summary = Vec::new();
    for (w, h) in [(390u32, 844u32), (1400, 900)] {
        tab.call_method(Emulation::SetDeviceMetricsOverride {
            width: w,
            height: h,
            device_scale_factor: 1.0,
            mobile: w < 600,
            scale: None,
            screen_width: None,
            screen_height: None,
            position_x: None,
            position_y: None,
            dont_set_visible_size: None,
            screen_orientation: None,
            viewport: None,
            display_feature: None,
            device_posture: None,
        })
        .expect("viewport size");
        tab.navigate_to(&url)
            .expect("navigate")
            .wait_until_navigated()
            .expect("page loads");
        let p = probe(&tab);
        let name = format!("{w}x{h}");
        let shot = |file: &str| {
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .expect("screenshot");
            std::fs::write(root.join(file), png).expect("screenshot written");
        };
        shot(&format!("page-{name}-top.png"));
        tab.evaluate("document.querySelector('figure.fig').scrollIntoView()", false)
            .expect("scroll to the first figure");
        shot(&format!("page-{name}-figure.png"));

        assert_eq!(p.viewport, f64::from(w), "{name}: viewport");
        assert!(
            p.page_width <= p.viewport,
            "{name}: page is {} px wide in a {} px viewport (widest: {})",
            p.page_width,
            p.viewport,
            p.widest
        );
        assert!(
            p.svgs > 0 && p.svgs_blank == 0,
            "{name}: {} of {} SVGs not drawn",
            p.svgs_blank,
            p.svgs
        );
        assert_eq!(
            p.images_broken, 0,
            "{name}: {} of {} images broken",
            p.images_broken, p.images
        );
        assert!(
            p.figure_texts > 100,
            "{name}: only {} figure texts",
            p.figure_texts
        );
        assert!(
            p.min_text_px >= MIN_TEXT_PX,
            "{name}: figure text `{}` renders at {:.2} px",
            p.min_text,
            p.min_text_px
        );
        assert!(
            p.line_chars <= MAX_LINE_CHARS,
            "{name}: prose runs {:.0} characters a line (`{}`)",
            p.line_chars,
            p.line_where
        );
        assert!(
            p.links > 10 && p.dangling.is_empty(),
            "{name}: links without a target: {:?}",
            p.dangling
        );
        summary.push(format!(
            "{name}: page width {} px in a {} px viewport; {} SVGs, {} images; smallest figure text {:.2} px (`{}`); longest prose line {:.0} characters; {} in-page links",
            p.page_width, p.viewport, p.svgs, p.images, p.min_text_px, p.min_text, p.line_chars, p.links
        ));
    }
    let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    drop(tab);
    drop(browser);
    let _ = std::fs::remove_dir_all(&profile);
    let text = summary.join("\n");
    std::fs::write(root.join("summary.txt"), format!("{text}\n")).expect("summary written");
    println!("{text}\nscreenshots: {}", root.display());
}
