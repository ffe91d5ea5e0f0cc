//! The label-audit section of a k-fold run's page (when `masklab audit` wrote RUN/audit.json):
//! one row per listed suspect, the person's photos as thumbnails beside the given and suggested
//! label, so that a person can review fifty suspects in a minute.
use super::html::{data_uri, escape, Page};
use super::mistakes::{locate, thumbnail};
use crate::audit::run::{read_audit, AuditFile};
use crate::audit::{Field, Suspect};
use crate::run_dir::RunDir;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// At most this many suspects are shown with photos (seven thumbnails each); the rest are in audit.json.
pub const MAX_ROWS: usize = 200;

const STYLE: &str = "<style>
.audit{display:flex;flex-direction:column;gap:8px}
.suspect{display:flex;gap:14px;align-items:center;border:1px solid #ddd;border-radius:6px;padding:6px 10px}
.suspect.hard{background:#fafafa;border-style:dashed}
.suspect .meta{width:330px;flex:none;font-size:13px}
.suspect .meta .label{font-size:15px}
.suspect .t{color:#2e7d32}.suspect .p{color:#c62828;font-weight:600}
.suspect .photos{display:flex;gap:4px;flex-wrap:wrap}
.suspect figure{margin:0;text-align:center;font-size:11px;color:#555}
.suspect figure img{height:84px;width:auto;display:block;border:3px solid transparent}
.suspect figure.says img{border-color:#c62828}
.badge{display:inline-block;border-radius:3px;padding:0 5px;font-size:11px;margin-left:4px}
.badge.hard{background:#fff3cd;color:#7a5a00}.badge.ok{background:#e8f5e9;color:#1b5e20}.badge.no{background:#eee;color:#555}
</style>";

/// Adds the section when the run has audit results; an unreadable audit file is a note on the
/// page, never a failed report.
pub fn audit_section(page: &mut Page, run: &RunDir, data_root: Option<&Path>) {
    let file = match read_audit(run) {
        Ok(Some(file)) => file,
        Ok(None) => return,
        Err(e) => {
            page.section("audit", "Label audit");
            page.html(&format!("<div class=\"note\">{}</div>", escape(&format!("{e:#}"))));
            return;
        }
    };
    page.section("audit", "Label audit: suspected wrong labels");
    page.html(STYLE);
    page.html(&summary(&file));
    for (task, f1) in file.audit.oof_f1.weak() {
        page.html(&format!("<div class=\"note\">The out-of-fold model reads {task} poorly (macro F1 {f1:.2}): its {task} suspects are mostly its own mistakes.</div>"));
    }
    page.html(&rows(&file, data_root));
}

fn summary(file: &AuditFile) -> String {
    let a = &file.audit;
    let listed = file.listed();
    let mut s = format!(
        "<p>From the out-of-fold predictions of {} images of {} people (<code>masklab audit</code>, RUN/audit.json): {} suspects, the top {} below, highest score first. \
         The score is the model's probability of the suggested value pooled over the photos considered (a swap: both photos), \
         times how reliably it reads that task out of fold (macro F1 corrected for chance); \
         age suspects at most {} years outside the suggested band and single photos read as the neighbouring mask state are hard cases, marked and halved. \
         Red frames: photos that by themselves say the suggested value. {} of the listed score at least {:.2} and are accepted for a relabel draft.</p>",
        a.images,
        a.people,
        a.suspects.len(),
        listed.len(),
        a.hard_years,
        file.accepted().len(),
        file.min_score
    );
    if listed.len() > MAX_ROWS {
        let _ = write!(s, "<p>The first {MAX_ROWS} are shown; audit.json holds all {}.</p>", listed.len());
    }
    if let Some(d) = &file.draft {
        let _ = write!(s, "<p>Draft written: <code>{}</code> ({} rows for suspects; apply it with <code>--relabel</code>).</p>", escape(&d.path), d.written.len());
    }
    s
}

fn rows(file: &AuditFile, data_root: Option<&Path>) -> String {
    let listed = &file.listed()[..file.listed().len().min(MAX_ROWS)];
    let paths: BTreeSet<&str> = listed.iter().flat_map(|s| s.photos.iter().map(|p| p.path.as_str())).collect();
    let thumbs: BTreeMap<&str, Result<Vec<u8>, String>> =
        paths.into_par_iter().map(|p| (p, thumbnail(&locate(p, data_root)).map_err(|e| format!("{e:#}")))).collect();
    let mut s = String::from("<div class=\"audit\">\n");
    for (rank, x) in listed.iter().enumerate() {
        let accepted = x.score >= file.min_score;
        let _ = write!(s, "<div class=\"suspect{}\"><div class=\"meta\">", if x.hard_case { " hard" } else { "" });
        let what = match &x.photo {
            Some(stem) => format!("{} of {stem}", x.field.name()),
            None => x.field.name().to_string(),
        };
        let _ = write!(
            s,
            "<div class=\"label\"><b>#{}</b> {} &middot; score {:.2}{}{}</div>",
            rank + 1,
            escape(&what),
            x.score,
            if x.hard_case { "<span class=\"badge hard\">hard case</span>" } else { "" },
            if accepted { "<span class=\"badge ok\">accepted</span>" } else { "<span class=\"badge no\">below min score</span>" }
        );
        let _ = write!(
            s,
            "<div>{}</div><div><span class=\"t\">given {}</span> &rarr; <span class=\"p\">suggested {}</span></div><div>{}</div>",
            escape(&x.person),
            escape(&x.given),
            escape(&x.suggested),
            escape(&x.evidence)
        );
        if !x.note.is_empty() {
            let _ = write!(s, "<div><i>{}</i></div>", escape(&x.note));
        }
        if let Some(r) = &x.relabel {
            let _ = write!(s, "<div><code>{},{},{}</code></div>", escape(&r.id), escape(&r.field), escape(&r.true_value));
        }
        s.push_str("</div><div class=\"photos\">");
        for p in &x.photos {
            let img = match thumbs.get(p.path.as_str()) {
                Some(Ok(jpeg)) => format!("<img src=\"{}\" alt=\"{}\" title=\"{}\">", data_uri("image/jpeg", jpeg), escape(&p.stem), escape(&p.path)),
                Some(Err(e)) => format!("<div class=\"note\" title=\"{}\">no image</div>", escape(e)),
                None => String::new(),
            };
            let _ = write!(s, "<figure{}>{img}<figcaption>{}</figcaption></figure>", if p.disagrees { " class=\"says\"" } else { "" }, escape(&caption(x, p)));
        }
        s.push_str("</div></div>\n");
    }
    s.push_str("</div>\n");
    s
}

fn caption(x: &Suspect, p: &crate::audit::PhotoEvidence) -> String {
    match x.field {
        Field::Gender | Field::Age => format!("{} {:.2}", p.stem, p.p_suggested),
        Field::Mask | Field::Swap if p.disagrees => format!("{} {:.2}", p.stem, p.p_suggested),
        _ => p.stem.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audit, PhotoEvidence, RelabelRow};

    #[test]
    fn suspects_show_as_photo_rows_with_given_and_suggested_labels() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("train/images/000010_female_White_25");
        std::fs::create_dir_all(&folder).unwrap();
        let photos: Vec<PhotoEvidence> = crate::labels::STEMS
            .iter()
            .enumerate()
            .map(|(k, stem)| {
                let path = folder.join(format!("{stem}.png"));
                if k != 3 {
                    image::RgbImage::from_pixel(60, 80, image::Rgb([90, 60, 30])).save(&path).unwrap();
                }
                PhotoEvidence { path: path.display().to_string(), stem: stem.to_string(), given: 3, predicted: 0, p_suggested: 0.9, disagrees: k != 5, flagged: true }
            })
            .collect();
        let suspect = Suspect {
            person: "000010_female_White_25".into(),
            id: "000010".into(),
            field: Field::Gender,
            photo: None,
            given: "female".into(),
            suggested: "male".into(),
            score: 0.91,
            confidence: 0.91,
            baseline: 0.0,
            reliability: 1.0,
            hard_case: false,
            disagreeing: 6,
            considered: 7,
            flagged: 6,
            evidence: "6 of 7 photos say male <b>".into(),
            photos,
            relabel: Some(RelabelRow { id: "000010".into(), field: "gender".into(), true_value: "male".into() }),
            note: String::new(),
        };
        let hard = Suspect { field: Field::Age, hard_case: true, score: 0.3, note: "hard case: age 29 is 1 year from 30-59".into(), ..suspect.clone() };
        let file = AuditFile {
            run: "r".into(),
            data: None,
            relabel_file: None,
            top: 2,
            min_score: 0.7,
            audit: Audit { images: 7, people: 1, age_bounds: [30, 60], hard_years: 2, thresholds: vec![], photo_issues: 6, flagged_photos: vec![], oof_f1: crate::audit::TaskF1 { mask: 1.0, gender: 0.9, age: 0.5 }, suspects: vec![suspect.clone(), hard, suspect] },
            draft: None,
            warnings: vec![],
        };
        let run = RunDir::new(dir.path());
        std::fs::write(run.audit_file(), serde_json::to_string(&file).unwrap()).unwrap();
        let mut page = Page::new("t", "s", "report");
        audit_section(&mut page, &run, None);
        let html = page.render();
        assert!(html.contains("Label audit"));
        assert_eq!(html.matches("<div class=\"suspect").count(), 2, "the top 2 only");
        assert_eq!(html.matches("data:image/jpeg;base64,").count(), 12, "six photos per row, the seventh missing");
        assert!(html.contains("no image"));
        assert!(html.contains("given female</span> &rarr; <span class=\"p\">suggested male"));
        assert!(html.contains("6 of 7 photos say male &lt;b&gt;"), "evidence is escaped");
        assert!(html.contains("badge hard") && html.contains("below min score") && html.contains("badge ok"));
        assert!(html.contains("<code>000010,gender,male</code>"));
        assert!(html.contains("reads age poorly (macro F1 0.50)"));
        assert_eq!(html.matches("class=\"says\"").count(), 12);

        // No audit file: no section; a broken one: a note.
        let mut page = Page::new("t", "s", "report");
        audit_section(&mut page, &RunDir::new(dir.path().join("elsewhere")), None);
        assert!(!page.render().contains("Label audit"));
        std::fs::write(run.audit_file(), "{").unwrap();
        let mut page = Page::new("t", "s", "report");
        audit_section(&mut page, &run, None);
        assert!(page.render().contains("not an audit file"));
    }
}
