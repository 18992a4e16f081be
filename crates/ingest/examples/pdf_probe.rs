use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

fn words(s: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in s.split_whitespace() {
        let w: String = w.chars().filter(|c| c.is_alphanumeric()).collect();
        if w.chars().count() >= 2 {
            *m.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    m
}

fn bigrams(s: &str) -> HashMap<(char, char), usize> {
    let cs: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut m = HashMap::new();
    for w in cs.windows(2) {
        *m.entry((w[0], w[1])).or_default() += 1;
    }
    m
}

fn recall2(reference: &str, got: &str) -> (usize, usize) {
    let r = bigrams(reference);
    let g = bigrams(got);
    let total: usize = r.values().sum();
    let hit: usize = r.iter().map(|(w, c)| (*c).min(*g.get(w).unwrap_or(&0))).sum();
    (hit, total)
}

fn recall(reference: &str, got: &str) -> (usize, usize) {
    let r = words(reference);
    let g = words(got);
    let total: usize = r.values().sum();
    let hit: usize = r.iter().map(|(w, c)| (*c).min(*g.get(w).unwrap_or(&0))).sum();
    (hit, total)
}

fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "pdf")).collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let refdir = Path::new("/tmp/pdfref").join(&name);
        let bytes = std::fs::read(&f).unwrap();
        // pdf_oxide
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| {
            let doc = pdf_oxide::PdfDocument::from_bytes(bytes.clone()).map_err(|e| e.to_string())?;
            let n = doc.page_count().map_err(|e| e.to_string())?;
            let mut pages = Vec::new();
            let mut errs = 0;
            for i in 0..n {
                match doc.extract_text(i) { Ok(s) => pages.push(s), Err(_) => { errs += 1; pages.push(String::new()) } }
            }
            Ok::<_, String>((pages, errs))
        });
        let el = t.elapsed();
        report("oxide", &name, &refdir, r.map_err(|_| "PANIC".to_string()).and_then(|x| x), el);
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| {
            pdf_extract::extract_text_from_mem_by_pages(&bytes).map(|p| (p, 0)).map_err(|e| e.to_string())
        });
        let el = t.elapsed();
        report("pdfext", &name, &refdir, r.map_err(|_| "PANIC".to_string()).and_then(|x| x), el);
    }
}

fn report(which: &str, name: &str, refdir: &Path, r: Result<(Vec<String>, usize), String>, el: std::time::Duration) {
    match r {
        Err(e) => println!("{which:7} {name:40} ERROR {e} ({:.2}s)", el.as_secs_f64()),
        Ok((pages, errs)) => {
            let mut hit = 0; let mut total = 0; let mut bh = 0; let mut bt = 0; let mut empty = 0; let mut chars = 0; let mut worst = (1.0f64, 0usize);
            for (i, p) in pages.iter().enumerate() {
                if p.trim().is_empty() { empty += 1; }
                chars += p.chars().count();
                let reference = std::fs::read_to_string(refdir.join(format!("{}.txt", i + 1))).unwrap_or_default();
                let (h, t) = recall(&reference, p);
                hit += h; total += t; let (h2, t2) = recall2(&reference, p); bh += h2; bt += t2;
                if std::env::var("DUMP").is_ok_and(|d| d == format!("{which}:{name}:{}", i + 1)) { println!("-----\n{p}\n-----"); }
                if t > 20 { let r = h as f64 / t as f64; if r < worst.0 { worst = (r, i + 1); } }
            }
            println!("{which:7} {name:40} pages={:4} errs={errs} empty={empty:3} chars={chars:7} word-recall={:.3} bigram-recall={:.3} worst-page={}@{:.2} time={:.2}s",
                pages.len(), if total > 0 { hit as f64 / total as f64 } else { 1.0 }, if bt > 0 { bh as f64 / bt as f64 } else { 1.0 }, worst.1, worst.0, el.as_secs_f64());
        }
    }
}
