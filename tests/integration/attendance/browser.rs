//! A real browser for the page tests: Debian's `chromium`, headless (scripts/test installs it).
//! Each run gets a fresh profile and is bounded in time; nothing reaches the network.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    let found = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.exists())
    });
    found.expect("Chromium is needed for the page tests: `apt-get install chromium` (scripts/test installs it)")
}

/// Runs Chromium headless on `page` with `extra` arguments; its standard output.
fn run(page: &Path, extra: &[String]) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap().unwrap()
}

/// The DOM after the page loaded, serialized.
pub fn dump_dom(page: &Path) -> String {
    String::from_utf8(run(page, &["--dump-dom".to_string()])).unwrap()
}

/// A screenshot of the page at `width`×`height`, decoded.
pub struct Screenshot {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// RGBA, row by row.
    pub pixels: Vec<u8>,
}

pub fn screenshot(page: &Path, width: u32, height: u32) -> Screenshot {
    let path = page.with_extension("png");
    run(
        page,
        &[
            format!("--screenshot={}", path.display()),
            format!("--window-size={width},{height}"),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let pixels = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    Screenshot {
        path,
        width: info.width,
        height: info.height,
        pixels,
    }
}

/// How many pixels differ from the page background, and how many have the colours of the
/// attendance bars and the lobby hatching.
#[derive(Debug)]
pub struct Colours {
    pub non_background: usize,
    pub bar_blue: usize,
    pub lobby_amber: usize,
}

pub fn colour_counts(shot: &Screenshot) -> Colours {
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 24);
    let background = [shot.pixels[0], shot.pixels[1], shot.pixels[2]];
    let mut c = Colours {
        non_background: 0,
        bar_blue: 0,
        lobby_amber: 0,
    };
    assert_eq!(shot.pixels.len(), (shot.width * shot.height * 4) as usize);
    for p in shot.pixels.chunks(4) {
        c.non_background += usize::from(!near(p, background));
        c.bar_blue += usize::from(near(p, [0x25, 0x63, 0xeb]));
        c.lobby_amber += usize::from(near(p, [0xd9, 0x77, 0x06]));
    }
    c
}
