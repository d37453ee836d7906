//! Tables exactly as `terminal-table` 1.4.5 (the version af 0.3.22 requires) draws them:
//! `+---+` separators, one space of padding on each side, every column as wide as its widest
//! line, cells split on newlines into several lines.
//!
//! One quirk matters for af: a heading appended after the headings were set (af's
//! `t.headings << 'In'`) is not counted when column widths are computed, so such a column is as
//! wide as its widest *row* value. [`Table::push_late_heading`] reproduces that.

/// A table being built.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    headings: Vec<String>,
    rows: Vec<Vec<String>>,
    widths: Vec<usize>,
}

impl Table {
    /// A table with these headings (counted in the column widths).
    pub(crate) fn new<S: AsRef<str>>(headings: &[S]) -> Table {
        let mut table = Table {
            headings: headings.iter().map(|h| h.as_ref().to_owned()).collect(),
            ..Table::default()
        };
        let headings = table.headings.clone();
        table.recalc(&headings);
        table
    }

    /// A heading appended to the headings row after it was set: shown, but not measured.
    pub(crate) fn push_late_heading(&mut self, heading: &str) {
        self.headings.push(heading.to_owned());
    }

    /// Adds a row (`t << [...]`).
    pub(crate) fn push<S: AsRef<str>>(&mut self, row: &[S]) {
        let row: Vec<String> = row.iter().map(|c| c.as_ref().to_owned()).collect();
        self.recalc(&row);
        self.rows.push(row);
    }

    fn recalc(&mut self, row: &[String]) {
        for (i, cell) in row.iter().enumerate() {
            let width = lines(cell)
                .iter()
                .map(|l| visible_len(l))
                .max()
                .unwrap_or(0);
            if self.widths.len() <= i {
                self.widths.resize(i + 1, 0);
            }
            if self.widths[i] < width {
                self.widths[i] = width;
            }
        }
    }

    fn width(&self, column: usize) -> usize {
        self.widths.get(column).copied().unwrap_or(0)
    }

    fn number_of_columns(&self) -> usize {
        std::iter::once(&self.headings)
            .chain(self.rows.iter())
            .map(Vec::len)
            .max()
            .unwrap_or(0)
    }

    fn separator(&self) -> String {
        let mut line = String::from("+");
        for column in 0..self.number_of_columns() {
            line.push_str(&"-".repeat(self.width(column) + 2));
            line.push('+');
        }
        line
    }

    fn render_row(&self, row: &[String]) -> String {
        let height = row.iter().map(|c| lines(c).len()).max().unwrap_or(0);
        let mut out = Vec::with_capacity(height);
        for line_index in 0..height {
            let mut line = String::from("|");
            for (column, cell) in row.iter().enumerate() {
                let cell_lines = lines(cell);
                let text = cell_lines.get(line_index).map_or("", String::as_str);
                let padding = (self.width(column) + 2).saturating_sub(visible_len(text) + 2);
                line.push(' ');
                line.push_str(text);
                line.push(' ');
                line.push_str(&" ".repeat(padding));
                line.push('|');
            }
            out.push(line);
        }
        out.join("\n")
    }

    /// The table, lines joined by `\n`, no newline at the end (Ruby's `to_s`).
    pub(crate) fn render(&self) -> String {
        let separator = self.separator();
        let mut buffer = vec![separator.clone()];
        if !self.headings.is_empty() {
            buffer.push(self.render_row(&self.headings));
            buffer.push(separator.clone());
        }
        for row in &self.rows {
            buffer.push(self.render_row(row));
        }
        buffer.push(separator);
        buffer.join("\n")
    }
}

/// Ruby's `value.to_s.split(/\n/)`: trailing empty pieces dropped, so `""` has no lines.
fn lines(value: &str) -> Vec<String> {
    let mut pieces: Vec<String> = value.split('\n').map(str::to_owned).collect();
    while pieces.last().is_some_and(String::is_empty) {
        pieces.pop();
    }
    pieces
}

/// The length terminal-table measures: ANSI colour sequences do not count (nor, by its quirk, `|`).
fn visible_len(text: &str) -> usize {
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && matches!(chars.peek(), Some('[' | '(' | ')')) {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        // terminal-table's `/[\x03|\x1a]/` is a character class: it drops `|` too.
        if c == '\u{3}' || c == '\u{1a}' || c == '|' {
            continue;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_table_like_af() {
        let mut t = Table::new(&["Application", "# ", "Health", "URLS", "Services"]);
        t.push(&["crashy", "1", "0%", "crashy.aws.af.cm", ""]);
        t.push(&["mapp", "1", "RUNNING", "mapp.aws.af.cm", "mysql-abc"]);
        assert_eq!(
            t.render(),
            "+-------------+----+---------+------------------+-----------+\n\
             | Application | #  | Health  | URLS             | Services  |\n\
             +-------------+----+---------+------------------+-----------+\n\
             | crashy      | 1  | 0%      | crashy.aws.af.cm |           |\n\
             | mapp        | 1  | RUNNING | mapp.aws.af.cm   | mysql-abc |\n\
             +-------------+----+---------+------------------+-----------+"
        );
    }

    #[test]
    fn a_late_heading_is_not_measured() {
        let mut t = Table::new(&["Name", "Service"]);
        t.push_late_heading("In");
        t.push(&["db", "mysql", "   "]);
        assert_eq!(
            t.render(),
            "+------+---------+-----+\n\
             | Name | Service | In  |\n\
             +------+---------+-----+\n\
             | db   | mysql   |     |\n\
             +------+---------+-----+"
        );
        let mut narrow = Table::new(&["A"]);
        narrow.push_late_heading("In");
        narrow.push(&["x", "h"]);
        assert_eq!(
            narrow.render(),
            "+---+---+\n| A | In |\n+---+---+\n| x | h |\n+---+---+"
        );
    }

    #[test]
    fn multi_line_and_empty_cells() {
        let mut t = Table::new(&["Variable", "Value"]);
        t.push(&["A", "one\ntwo"]);
        assert_eq!(
            t.render(),
            "+----------+-------+\n\
             | Variable | Value |\n\
             +----------+-------+\n\
             | A        | one   |\n\
             |          | two   |\n\
             +----------+-------+"
        );
        let mut empty = Table::new(&["A"]);
        empty.push(&[""]);
        assert_eq!(empty.render(), "+---+\n| A |\n+---+\n\n+---+");
    }
}
