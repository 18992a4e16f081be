//! Spreadsheets (read with `calamine`) and CSV files (read with `csv`) as
//! table text: one page per sheet, one line per row, cells separated by
//! ` | `, with each row's place recorded so that chunks can name their row
//! range and repeat the header row.

use std::io::Cursor;

use calamine::{open_workbook_auto_from_rs, Data, Reader, SheetType};

use crate::parse::{decode_text, Extracted, Page, PageAnchor, TableLayout, TableRow};

/// Reads every worksheet of an `.xlsx`, `.xlsm`, `.xlsb`, `.xls` or `.ods`
/// workbook. Chart and dialog sheets and empty sheets are left out; a sheet
/// that cannot be read costs a warning, not the workbook.
pub(crate) fn parse_workbook(bytes: &[u8]) -> Result<Extracted, String> {
    let mut book = open_workbook_auto_from_rs(Cursor::new(bytes.to_vec()))
        .map_err(|e| format!("not a readable spreadsheet: {e}"))?;
    let sheets: Vec<(String, SheetType)> = book
        .sheets_metadata()
        .iter()
        .map(|s| (s.name.clone(), s.typ))
        .collect();
    let mut pages = Vec::new();
    let mut warnings = Vec::new();
    let mut failed = 0;
    let mut fallback = None;
    for (name, typ) in &sheets {
        if matches!(typ, SheetType::ChartSheet | SheetType::DialogSheet) {
            continue;
        }
        let range = match book.worksheet_range(name) {
            Ok(range) => range,
            Err(e) => {
                match fallback_sheet(bytes, &mut fallback, name) {
                    Some(page) => {
                        warnings.push(format!(
                            "sheet \"{name}\" was read with the fallback reader ({e})"
                        ));
                        pages.extend(page);
                    }
                    None => {
                        failed += 1;
                        warnings.push(format!("sheet \"{name}\" could not be read: {e}"));
                    }
                }
                continue;
            }
        };
        let first_row = range.start().map_or(0, |(row, _)| row);
        let rows = range.rows().enumerate().map(|(i, cells)| {
            let number = first_row.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
            (
                number.saturating_add(1),
                cells.iter().map(cell_text).collect(),
            )
        });
        if let Some(page) = table_page(rows, name) {
            pages.push(page);
        }
    }
    if failed > 0 && failed == sheets.len() {
        return Err(warnings.join("; "));
    }
    Ok(Extracted {
        pages,
        title: None,
        warnings,
    })
}

/// The workbook as read by `office_oxide`, opened on first use.
type Fallback = Option<Option<office_oxide::DocumentIR>>;

/// Reads one sheet with `office_oxide`, whose XLSX and XLS readers accept
/// some files `calamine` rejects (such as numbers written with spaces).
/// `Some(None)` for a sheet that it reads as empty.
fn fallback_sheet(bytes: &[u8], book: &mut Fallback, name: &str) -> Option<Option<Page>> {
    use office_oxide::ir::{inline_to_text, Element};
    use office_oxide::{Document, DocumentFormat};
    let ir = book.get_or_insert_with(|| {
        let format = if bytes.starts_with(b"PK") {
            DocumentFormat::Xlsx
        } else {
            DocumentFormat::Xls
        };
        Document::from_reader(Cursor::new(bytes.to_vec()), format)
            .ok()
            .map(|d| d.to_ir())
    });
    let section = ir
        .as_ref()?
        .sections
        .iter()
        .find(|s| s.title.as_deref() == Some(name))?;
    let table = section.elements.iter().find_map(|e| match e {
        Element::Table(t) => Some(t),
        _ => None,
    })?;
    let cell_text = |content: &[Element]| {
        content
            .iter()
            .filter_map(|e| match e {
                Element::Paragraph(p) => Some(inline_to_text(&p.content)),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows = table.rows.iter().enumerate().map(|(i, row)| {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        (
            number,
            row.cells.iter().map(|c| cell_text(&c.content)).collect(),
        )
    });
    Some(table_page(rows, name))
}

/// Reads a CSV file (or a TSV file when `tabs`) into one table page. A
/// `.csv` whose first line has more semicolons than commas is read with
/// semicolons, as spreadsheet programs in many locales write it.
pub(crate) fn parse_csv(bytes: &[u8], tabs: bool) -> Result<Extracted, String> {
    let mut warnings = Vec::new();
    let text = decode_text(bytes.to_vec(), &mut warnings);
    let delimiter = if tabs {
        b'\t'
    } else {
        let first = text.lines().next().unwrap_or("");
        if first.matches(';').count() > first.matches(',').count() {
            b';'
        } else {
            b','
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("not readable as CSV: {e}"))?;
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        rows.push((number, record.iter().map(str::to_string).collect()));
    }
    let pages = table_page(rows.into_iter(), "").into_iter().collect();
    Ok(Extracted {
        pages,
        title: None,
        warnings,
    })
}

/// Lays out rows (`(row number, cells)`) as a table page, or `None` when no
/// row has any text. An empty `sheet` name makes a whole-document page.
fn table_page(rows: impl Iterator<Item = (u32, Vec<String>)>, sheet: &str) -> Option<Page> {
    let rows: Vec<(u32, Vec<String>)> = rows
        .map(|(n, cells)| {
            let mut cells: Vec<String> = cells.iter().map(|c| clean_cell(c)).collect();
            while cells.last().is_some_and(String::is_empty) {
                cells.pop();
            }
            (n, cells)
        })
        .filter(|(_, cells)| !cells.is_empty())
        .collect();
    if rows.is_empty() {
        return None;
    }
    let header_at = header_index(&rows);
    let mut text = String::new();
    let mut layout = TableLayout::default();
    for (i, (number, cells)) in rows.iter().enumerate() {
        if !text.is_empty() {
            text.push('\n');
        }
        let start = text.len();
        text.push_str(&cells.join(" | "));
        let row = TableRow {
            row: *number,
            start,
            end: text.len(),
        };
        if Some(i) == header_at {
            layout.header = Some(row);
        }
        layout.rows.push(row);
    }
    let anchor = if sheet.is_empty() {
        PageAnchor::Document
    } else {
        PageAnchor::Sheet {
            name: sheet.to_string(),
        }
    };
    Some(Page {
        number: None,
        text,
        anchor,
        table: Some(layout),
        ..Page::default()
    })
}

/// The header row: among the first 50 rows, those that fill at least half
/// as many cells as the widest row, at least two, with mostly non-numeric
/// cells, are candidates; the first candidate followed by a row of data (a
/// row as full that holds a number) wins, else the first candidate. Rows
/// of notes above a table are passed over this way.
fn header_index(rows: &[(u32, Vec<String>)]) -> Option<usize> {
    let filled = |cells: &[String]| cells.iter().filter(|c| !c.is_empty()).count();
    let is_number = |c: &str| !c.is_empty() && c.replace([',', ' '], "").parse::<f64>().is_ok();
    let numeric = |cells: &[String]| cells.iter().filter(|c| is_number(c)).count();
    let widest = rows.iter().map(|(_, c)| filled(c)).max().unwrap_or(0);
    if widest < 2 {
        return None;
    }
    let candidate = |cells: &[String]| {
        let n = filled(cells);
        n >= 2 && n * 2 >= widest && numeric(cells) * 2 < n
    };
    let candidates: Vec<usize> = (0..rows.len().min(50))
        .filter(|&i| candidate(&rows[i].1))
        .collect();
    candidates
        .iter()
        .copied()
        .find(|&i| {
            rows.get(i + 1)
                .is_some_and(|(_, next)| filled(next) * 2 >= widest && numeric(next) > 0)
        })
        .or_else(|| candidates.first().copied())
}

/// A cell's text on one line: line breaks and runs of whitespace become
/// single spaces.
fn clean_cell(text: &str) -> String {
    if text.contains(char::is_whitespace) {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        text.to_string()
    }
}

/// A cell as text: whole floats without a fraction, dates as ISO 8601
/// (without the time at midnight), errors as Excel shows them.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::DateTime(dt) if dt.is_datetime() => match dt.as_datetime() {
            Some(t) => {
                let s = t.to_string();
                s.strip_suffix(" 00:00:00").map(str::to_string).unwrap_or(s)
            }
            None => dt.as_f64().to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u32, cells: &[&str]) -> (u32, Vec<String>) {
        (n, cells.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn header_skips_notes_and_numeric_rows() {
        let rows = vec![
            row(1, &["Lots of people"]),
            row(2, &["simply cannot resist", "", ""]),
            row(3, &["at", "the", "top"]),
            row(4, &["Name", "Profession", "Age"]),
            row(5, &["David Bowie", "musician", "69"]),
        ];
        assert_eq!(header_index(&rows), Some(3));
        let numbers = vec![row(1, &["1", "2"]), row(2, &["3", "4"])];
        assert_eq!(header_index(&numbers), None);
    }

    #[test]
    fn table_page_records_rows_and_header() {
        let page = table_page(
            vec![
                row(3, &["a", "b", ""]),
                row(4, &["", "", ""]),
                row(5, &["1", "two\nlines", ""]),
            ]
            .into_iter(),
            "Data",
        )
        .unwrap();
        assert_eq!(page.text, "a | b\n1 | two lines");
        let table = page.table.unwrap();
        assert_eq!(table.header.map(|h| h.row), Some(3));
        let spans: Vec<(u32, &str)> = table
            .rows
            .iter()
            .map(|r| (r.row, &page.text[r.start..r.end]))
            .collect();
        assert_eq!(spans, vec![(3, "a | b"), (5, "1 | two lines")]);
        assert_eq!(
            page.anchor,
            PageAnchor::Sheet {
                name: "Data".into()
            }
        );
    }

    #[test]
    fn csv_with_quotes_semicolons_and_tabs() {
        let got = parse_csv(b"name;city\n\"Doe; J.\";Berlin\n", false).unwrap();
        assert_eq!(got.pages[0].text, "name | city\nDoe; J. | Berlin");
        let got = parse_csv(b"a\tb\n1\t\"x,y\"\n", true).unwrap();
        assert_eq!(got.pages[0].text, "a | b\n1 | x,y");
        assert!(parse_csv(b"", false).unwrap().pages.is_empty());
    }

    #[test]
    fn cells_render_like_a_spreadsheet() {
        assert_eq!(cell_text(&Data::Float(3.0)), "3");
        assert_eq!(cell_text(&Data::Float(2.5)), "2.5");
        assert_eq!(cell_text(&Data::Int(-4)), "-4");
        assert_eq!(cell_text(&Data::Bool(true)), "true");
        assert_eq!(cell_text(&Data::Empty), "");
    }
}
