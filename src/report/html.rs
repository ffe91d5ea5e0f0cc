//! A self-contained HTML page: sections, tables, and figures embedded as base64 PNGs (so the
//! page can be mailed or moved alone) that are also written as PNG files beside it for reuse.
use crate::util::write_atomic;
use anyhow::Result;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A PNG the page shows, and the file name it is also written under.
pub struct Figure {
    pub file: String,
    pub png: Vec<u8>,
}

pub struct Page {
    title: String,
    subtitle: String,
    /// (anchor id, heading) of each section, for the table of contents.
    sections: Vec<(String, String)>,
    body: String,
    figures: Vec<Figure>,
    /// Where figure files go, relative to the page's folder ("" = beside it).
    figure_dir: String,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML table; cells are text (escaped). A row's first cell is its header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table>\n<thead><tr>");
    for h in headers {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        s.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            let _ = write!(s, "<{tag}>{}</{tag}>", escape(cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// Two columns of facts: name, value.
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut s = String::from("<table class=\"facts\">\n");
    for (k, v) in rows {
        let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    s.push_str("</table>\n");
    s
}

/// A score card: the value large, its 95% interval under it when there is one, and its name.
pub struct Card {
    pub value: String,
    pub interval: Option<String>,
    pub name: String,
}

impl Card {
    pub fn new(name: &str, value: String) -> Card {
        Card { value, interval: None, name: name.to_string() }
    }

    /// With `95% CI [low, high]` under the value.
    pub fn with_interval(mut self, interval: Option<&crate::metrics::bootstrap::ScoreInterval>) -> Card {
        self.interval = interval.map(|i| format!("95% CI {}", i.bracket()));
        self
    }
}

/// A row of score cards.
pub fn cards(cards: &[Card]) -> String {
    let mut s = String::from("<div class=\"cards\">");
    for c in cards {
        let interval = c.interval.as_ref().map(|i| format!("<div class=\"ci\">{}</div>", escape(i))).unwrap_or_default();
        let _ = write!(s, "<div class=\"card\"><div class=\"v\">{}</div>{interval}<div class=\"k\">{}</div></div>", escape(&c.value), escape(&c.name));
    }
    s.push_str("</div>");
    s
}

pub fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", STANDARD.encode(bytes))
}

impl Page {
    pub fn new(title: &str, subtitle: &str, figure_dir: &str) -> Page {
        Page { title: title.into(), subtitle: subtitle.into(), sections: Vec::new(), body: String::new(), figures: Vec::new(), figure_dir: figure_dir.into() }
    }

    pub fn section(&mut self, id: &str, heading: &str) {
        self.sections.push((id.into(), heading.into()));
        let _ = writeln!(self.body, "<h2 id=\"{}\">{}</h2>", escape(id), escape(heading));
    }

    /// A paragraph of plain text.
    pub fn text(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    /// Markup the caller built (from `table`, `facts`, or escaped text).
    pub fn html(&mut self, html: &str) {
        self.body.push_str(html);
        self.body.push('\n');
    }

    /// Opens a row of figures laid out side by side; `end_row` closes it.
    pub fn begin_row(&mut self) {
        self.body.push_str("<div class=\"row\">\n");
    }

    pub fn end_row(&mut self) {
        self.body.push_str("</div>\n");
    }

    /// Embeds a PNG with a caption and a link to its file.
    pub fn figure(&mut self, file: &str, png: Vec<u8>, caption: &str) {
        let href = if self.figure_dir.is_empty() { file.to_string() } else { format!("{}/{file}", self.figure_dir) };
        let _ = writeln!(
            self.body,
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{} &middot; <a href=\"{}\">{}</a></figcaption></figure>",
            data_uri("image/png", &png),
            escape(caption),
            escape(caption),
            escape(&href),
            escape(file)
        );
        self.figures.push(Figure { file: file.into(), png });
    }

    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"sub\">{}</p>\n",
            escape(&self.title),
            escape(&self.title),
            escape(&self.subtitle)
        );
        if !self.sections.is_empty() {
            s.push_str("<nav>");
            let links: Vec<String> = self.sections.iter().map(|(id, h)| format!("<a href=\"#{}\">{}</a>", escape(id), escape(h))).collect();
            s.push_str(&links.join(" &middot; "));
            s.push_str("</nav>\n");
        }
        s.push_str(&self.body);
        let _ = write!(s, "<footer>written by masklab {}</footer>\n</body>\n</html>\n", env!("CARGO_PKG_VERSION"));
        s
    }

    /// Writes the figure files into `dir/figure_dir`, then the page as `dir/name` (atomically,
    /// last, so a reader never finds a page whose files are missing). Returns the page's path.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let figure_dir = dir.join(&self.figure_dir);
        for f in &self.figures {
            write_atomic(&figure_dir.join(&f.file), &f.png)?;
        }
        let path = dir.join(name);
        write_atomic(&path, self.render().as_bytes())?;
        Ok(path)
    }
}

const STYLE: &str = "
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1900px;padding:0 24px;color:#212121;line-height:1.45}
h1{margin-bottom:0}h2{margin-top:40px;border-bottom:2px solid #ddd;padding-bottom:4px}
.sub{color:#555;margin-top:4px}nav{margin:12px 0 8px;font-size:15px}nav a{color:#1565c0;text-decoration:none}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
thead th{background:#f3f5f8}td{font-variant-numeric:tabular-nums}table.facts th{background:#f7f7f7;font-weight:600}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:8px 0 16px}figure img{display:block;max-width:100%;height:auto;border:1px solid #e3e3e3}
figcaption{font-size:13px;color:#555;margin-top:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:120px}
.card .v{font-size:26px;font-weight:600}.card .ci{font-size:13px;color:#333;font-variant-numeric:tabular-nums}.card .k{font-size:13px;color:#555}
.mistakes{display:flex;flex-wrap:wrap;gap:12px}.mistake{width:210px;border:1px solid #ddd;border-radius:6px;padding:8px;font-size:13px}
.mistake img{display:block;margin:0 auto 6px;height:96px;width:auto}.mistake .t{color:#2e7d32}.mistake .p{color:#c62828}
.note{background:#fff8e1;border-left:4px solid #f9a825;padding:6px 12px}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:12px;overflow:auto;font-size:13px;max-height:640px}
footer{margin-top:40px;color:#888;font-size:12px}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_text_and_embed_and_write_figures() {
        let dir = tempfile::tempdir().unwrap();
        let mut page = Page::new("Run <a&b>", "sub", "report");
        page.section("curves", "Learning curves");
        page.figure("x.png", vec![1, 2, 3], "A \"chart\"");
        page.html(&table(&["class", "f1"], &[vec!["<30".into(), "0.5".into()]]));
        let path = page.write(dir.path(), "report.html").unwrap();
        let html = std::fs::read_to_string(path).unwrap();
        assert!(html.contains("<title>Run &lt;a&amp;b&gt;</title>"));
        assert!(html.contains("data:image/png;base64,AQID"));
        assert!(html.contains("href=\"report/x.png\"") && html.contains("alt=\"A &quot;chart&quot;\""));
        assert!(html.contains("<th>&lt;30</th><td>0.5</td>"));
        assert!(html.contains("<a href=\"#curves\">Learning curves</a>"));
        assert_eq!(std::fs::read(dir.path().join("report/x.png")).unwrap(), vec![1, 2, 3]);
    }
}
