//! [`Table`]: plain aligned text columns, to paste into an issue note as they are.

use std::fmt::Write as _;

/// Rows of cells under a header; the first column is left-aligned, the others right.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
    /// Columns to left-align (besides the first).
    left: Vec<usize>,
}

impl Table {
    /// A table with this header row.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
            left: vec![0],
        }
    }

    /// Left-aligns column `index` too (for text columns).
    pub(crate) fn left(mut self, index: usize) -> Table {
        self.left.push(index);
        self
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, every line indented by two spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::from(" ");
            for (c, cell) in row.iter().enumerate() {
                let width = widths[c];
                if self.left.contains(&c) {
                    let _ = write!(line, " {cell:<width$}");
                } else {
                    let _ = write!(line, " {cell:>width$}");
                }
                line.push(' ');
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["tool", "MB/s"]);
        t.row(vec!["aws-hop".into(), "745".into()]);
        t.row(vec!["ssh".into(), "1024".into()]);
        assert_eq!(
            t.render(),
            "  tool     MB/s\n  aws-hop   745\n  ssh      1024\n"
        );
    }
}
