//! The selftest's table: test, expected, got, ok.

/// One row.
pub struct Row {
    pub test: String,
    pub expected: String,
    pub got: String,
    pub ok: bool,
}

/// The table, columns padded to their widest cell, a header first.
pub fn table(rows: &[Row]) -> String {
    let header = ["test", "expected", "got", "ok"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.test.clone(),
                r.expected.clone(),
                r.got.clone(),
                if r.ok { "ok" } else { "FAIL" }.to_owned(),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |c: [&str; 4]| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = line(header);
    for c in &cells {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = table(&[
            Row {
                test: "a".into(),
                expected: "x >=high".into(),
                got: "x critical".into(),
                ok: true,
            },
            Row {
                test: "longer_name".into(),
                expected: "y".into(),
                got: "no alert for pid 3".into(),
                ok: false,
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("test         expected  got"));
        assert!(lines[1].ends_with("  ok"));
        assert!(lines[2].ends_with("  FAIL"));
        assert_eq!(lines[1].find("x critical"), lines[2].find("no alert"));
    }
}
