//! The pages' markup. maud escapes every interpolated value, so a file name such as
//! `<script>.txt` is shown as text, never run.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::assets::{CSS, JS};
use crate::links::rfc3339;

/// What the download confirmation page shows.
pub struct DownloadView<'a> {
    /// The name the file will be saved under.
    pub name: &'a str,
    /// The file's size, or the sum of a directory's files (its zip's exact size is known only
    /// once it is built); `None` for a directory too large to sum.
    pub size: Option<u64>,
    /// A directory, sent as a zip file.
    pub directory: bool,
    pub expires_at: u64,
    pub now: u64,
}

/// What the upload page shows.
pub struct UploadView<'a> {
    /// The name the upload will be stored under, whatever the chosen file is called.
    pub name: &'a str,
    /// The cap in force (the token's, or the server's ceiling).
    pub cap: u64,
    pub expires_at: u64,
    pub now: u64,
    pub sha256: Option<String>,
    pub overwrite: bool,
}

/// A page for a link that cannot be used, in words a person understands.
pub struct ErrorView<'a> {
    pub title: &'a str,
    pub explanation: &'a str,
}

fn layout(title: &str, body: Markup, script: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                meta name="robots" content="noindex, nofollow";
                title { (title) " · burnlink" }
                style { (PreEscaped(CSS)) }
            }
            body {
                main { (body) }
                @if script {
                    script { (PreEscaped(JS)) }
                }
            }
        }
    }
}

fn expiry(expires_at: u64, now: u64) -> Markup {
    let at = rfc3339(expires_at);
    html! {
        time datetime=(at) { (at.replace('T', " ").replace('Z', " UTC")) }
        " (" (remaining(expires_at.saturating_sub(now))) ")"
    }
}

pub fn download(v: &DownloadView) -> Markup {
    let body = html! {
        h1 { "A file is ready for you" }
        p class="name" { (v.name) }
        dl {
            dt { "Size" }
            dd {
                @if let Some(n) = v.size {
                    (human_size(n)) @if n >= 1000 { " (" (grouped(n)) " bytes)" }
                }
                @if v.directory {
                    @if v.size.is_some() { ", in a folder sent as a zip file" }
                    @else { "a folder, sent as a zip file" }
                }
            }
            dt { "Link expires" }
            dd { (expiry(v.expires_at, v.now)) }
        }
        // A POST back to this very URL: previewers and scanners follow links but do not submit
        // forms, so only a person's click transfers the file and uses the link up.
        form id="download-form" method="post" {
            input type="hidden" name="burnlink" value="download";
            button id="download-button" type="submit" { "Download" }
        }
        p id="download-note" class="status ok" hidden {
            "Your download is starting. This link works only once: keep the file it saves."
        }
        p class="muted" {
            "This link works once. Opening this page does not use it up; the Download button does."
        }
    };
    layout("Download", body, true)
}

pub fn upload(v: &UploadView) -> Markup {
    let body = html! {
        h1 { "Send a file" }
        p {
            "The file you choose will be saved as "
            span class="name" { (v.name) } "."
        }
        dl {
            dt { "Largest file" }
            dd { (human_size(v.cap)) }
            dt { "Link expires" }
            dd { (expiry(v.expires_at, v.now)) }
            @if let Some(sha) = &v.sha256 {
                dt { "Expected SHA-256" }
                dd { code { (sha) } }
            }
            @if !v.overwrite {
                dt { "Note" }
                dd { "An existing file of that name will not be replaced." }
            }
        }
        form id="upload-form" method="post" data-cap=(v.cap) {
            label id="drop" class="drop" for="file" {
                "Drop a file here, or choose one"
                input id="file" type="file" name="file";
            }
            p id="chosen" class="name" hidden {}
            progress id="progress" value="0" max="1" hidden {}
            p id="percent" class="muted" hidden {}
            button id="upload-button" type="submit" disabled { "Upload" }
        }
        p id="status" class="status" role="status" aria-live="polite" hidden {}
        p id="digest" class="muted" hidden {}
        noscript {
            p class="status error" {
                "This page needs JavaScript to send the file. Without it, use: "
                code { "curl --data-binary @FILE THIS_URL" }
            }
        }
        p class="muted" { "This link works once: after a successful upload it is used up." }
    };
    layout("Send a file", body, true)
}

pub fn error(v: &ErrorView) -> Markup {
    let body = html! {
        h1 { (v.title) }
        p { (v.explanation) }
    };
    layout(v.title, body, false)
}

/// `3.2 MB`, in SI units as file managers on phones show them.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    if n < 1000 {
        return if n == 1 {
            "1 byte".into()
        } else {
            format!("{n} bytes")
        };
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `3,245,123`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `in 59 minutes`, coarse on purpose: the exact time is shown beside it.
fn remaining(secs: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("in 1 {unit}")
        } else {
            format!("in {n} {unit}s")
        }
    };
    match secs {
        0..60 => plural(secs, "second"),
        60..7200 => plural(secs / 60, "minute"),
        7200..172_800 => plural(secs / 3600, "hour"),
        _ => plural(secs / 86_400, "day"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "<script>alert(1)</script>\"'&.txt";

    fn assert_escaped(page: &str) {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;.txt"),
            "{page}"
        );
    }

    #[test]
    fn a_hostile_file_name_is_shown_as_text() {
        let page = download(&DownloadView {
            name: NASTY,
            size: Some(1),
            directory: false,
            expires_at: 2_000_000_000,
            now: 1_999_999_000,
        })
        .into_string();
        assert_escaped(&page);
        // The only script element is the page's own.
        assert_eq!(page.matches("<script>").count(), 1);
    }

    #[test]
    fn hostile_upload_names_and_digests_are_shown_as_text() {
        let page = upload(&UploadView {
            name: NASTY,
            cap: 10,
            expires_at: 2_000_000_000,
            now: 1_999_999_000,
            sha256: Some("<b>x</b>".into()),
            overwrite: false,
        })
        .into_string();
        assert_escaped(&page);
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(page.contains("data-cap=\"10\""));
        assert!(page.contains("will not be replaced"));
    }

    #[test]
    fn error_pages_escape_and_carry_no_script() {
        let page = error(&ErrorView {
            title: "<i>t</i>",
            explanation: "<img src=x onerror=alert(1)>",
        })
        .into_string();
        assert!(!page.contains("<img"));
        assert!(!page.contains("<script"));
        assert!(page.contains("&lt;i&gt;t&lt;/i&gt;"));
    }

    #[test]
    fn the_download_page_shows_name_size_expiry_and_a_post_form() {
        let page = download(&DownloadView {
            name: "report.pdf",
            size: Some(3_245_123),
            directory: false,
            expires_at: 1_800_000_000,
            now: 1_800_000_000 - 3599,
        })
        .into_string();
        assert!(page.contains("report.pdf"));
        assert!(page.contains("3.2 MB (3,245,123 bytes)"));
        assert!(page.contains("2027-01-15 08:00:00 UTC"), "{page}");
        assert!(page.contains("in 59 minutes"));
        assert!(page.contains(r#"<form id="download-form" method="post">"#));
        assert!(page.contains(r#"name="viewport""#));
    }

    #[test]
    fn a_directory_shows_the_sum_of_its_files() {
        let page = |size| {
            download(&DownloadView {
                name: "photos.zip",
                size,
                directory: true,
                expires_at: 1_800_000_000,
                now: 1_800_000_000 - 60,
            })
            .into_string()
        };
        let summed = page(Some(12_500_000));
        assert!(
            summed.contains("12 MB (12,500,000 bytes), in a folder sent as a zip file"),
            "{summed}"
        );
        assert!(page(None).contains("<dd>a folder, sent as a zip file</dd>"));
    }

    #[test]
    fn sizes_read_like_a_file_manager() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1000), "1.0 KB");
        assert_eq!(human_size(104_857_600), "105 MB");
        assert_eq!(human_size(u64::MAX), "18446744 TB");
        assert_eq!(grouped(1), "1");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(123_456_789), "123,456,789");
    }

    #[test]
    fn remaining_time() {
        assert_eq!(remaining(0), "in 0 seconds");
        assert_eq!(remaining(1), "in 1 second");
        assert_eq!(remaining(3599), "in 59 minutes");
        assert_eq!(remaining(7200), "in 2 hours");
        assert_eq!(remaining(86_400 * 3), "in 3 days");
    }
}
