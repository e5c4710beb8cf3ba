//! A reimplementation of the subset of `github.com/olekukonko/tablewriter` that
//! etcdctl's `-w table` uses: upper-cased centred headers, right-aligned cells,
//! `+---+` borders, and the 30-column auto-wrap of cells that contain spaces.
//!
//! Pure: renders to a `String`.

const MAX_COL_WIDTH: usize = 30;

/// Render `rows` under `header` as etcdctl's `table.SetAlignment(ALIGN_RIGHT)` does.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let ncols = header.len();
    let header: Vec<Vec<String>> = header.iter().map(|h| cell_lines(&title(h))).collect();
    let body: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|r| (0..ncols).map(|i| cell_lines(r.get(i).map(String::as_str).unwrap_or(""))).collect())
        .collect();
    let mut widths = vec![0usize; ncols];
    for row in std::iter::once(&header).chain(body.iter()) {
        for (i, lines) in row.iter().enumerate() {
            for l in lines {
                widths[i] = widths[i].max(width(l));
            }
        }
    }
    let border = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = border.clone();
    push_row(&mut out, &header, &widths, true);
    out.push_str(&border);
    for row in &body {
        push_row(&mut out, row, &widths, false);
    }
    out.push_str(&border);
    out
}

fn push_row(out: &mut String, row: &[Vec<String>], widths: &[usize], centre: bool) {
    let height = row.iter().map(Vec::len).max().unwrap_or(1).max(1);
    for line in 0..height {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let text = row.get(i).and_then(|c| c.get(line)).map(String::as_str).unwrap_or("");
            let gap = w.saturating_sub(width(text));
            out.push(' ');
            if centre {
                // tablewriter.Pad: gapLeft = floor(gap/2), the odd space goes right.
                let left = gap / 2;
                out.push_str(&" ".repeat(left));
                out.push_str(text);
                out.push_str(&" ".repeat(gap - left));
            } else {
                out.push_str(&" ".repeat(gap));
                out.push_str(text);
            }
            out.push_str(" |");
        }
        out.push('\n');
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// tablewriter.Title: `_` and (non-numeric) `.` become spaces, trimmed, upper-cased.
fn title(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let is_num_or_space = |c: char| c.is_ascii_digit() || c == ' ';
    let mapped: String = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            '_' => ' ',
            '.' if (i != 0 && !is_num_or_space(chars[i - 1]))
                || (i + 1 != chars.len() && !is_num_or_space(chars[i + 1])) =>
            {
                ' '
            }
            c => c,
        })
        .collect();
    let trimmed = mapped.trim();
    if trimmed.is_empty() && !name.is_empty() {
        return " ".to_string();
    }
    trimmed.to_uppercase()
}

/// The lines of one cell after tablewriter's auto-wrap (limit 30, or the longest word).
fn cell_lines(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for para in s.split('\n') {
        let max = width(para);
        if max <= MAX_COL_WIDTH {
            out.push(para.to_string());
            continue;
        }
        let words: Vec<&str> = para.split(' ').collect();
        let lim = words.iter().map(|w| width(w)).max().unwrap_or(0).max(MAX_COL_WIDTH);
        for line in wrap_words(&words, lim) {
            out.push(line.join(" "));
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// tablewriter.WrapWords: minimum-raggedness line breaking (penalty 1e5).
fn wrap_words<'a>(words: &[&'a str], lim: usize) -> Vec<Vec<&'a str>> {
    const PENALTY: i64 = 100_000;
    let n = words.len();
    if n == 0 {
        return vec![];
    }
    let lim = lim as i64;
    let mut length = vec![vec![0i64; n]; n];
    for i in 0..n {
        length[i][i] = width(words[i]) as i64;
        for j in i + 1..n {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]) as i64;
        }
    }
    let mut nbrk = vec![0usize; n];
    let mut cost = vec![0i64; n];
    for i in (0..n).rev() {
        if length[i][n - 1] <= lim {
            cost[i] = 0;
            nbrk[i] = n;
        } else {
            for j in i + 1..n {
                let d = lim - length[i][j - 1];
                let mut c = d * d + cost[j];
                if length[i][j - 1] > lim {
                    c += PENALTY;
                }
                if j == i + 1 || c < cost[i] {
                    cost[i] = c;
                    nbrk[i] = j;
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..nbrk[i]].to_vec());
        i = nbrk[i];
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_tablewriter() {
        // Captured from `etcdctl endpoint health -w table` (3.4.23).
        let got = render(
            &["endpoint", "health", "took", "error"],
            &[
                vec!["127.0.0.1:34747".into(), "true".into(), "1.716021ms".into(), "".into()],
                vec![
                    "127.0.0.1:1".into(),
                    "false".into(),
                    "5.000225791s".into(),
                    "context deadline exceeded".into(),
                ],
            ],
        );
        let want = "\
+-----------------+--------+--------------+---------------------------+
|    ENDPOINT     | HEALTH |     TOOK     |           ERROR           |
+-----------------+--------+--------------+---------------------------+
| 127.0.0.1:34747 |   true |   1.716021ms |                           |
|     127.0.0.1:1 |  false | 5.000225791s | context deadline exceeded |
+-----------------+--------+--------------+---------------------------+
";
        assert_eq!(got, want);
    }

    #[test]
    fn wraps_long_cells_with_spaces() {
        let lines = cell_lines("etcdserver: mvcc: required revision has been compacted");
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
        assert_eq!(lines.join(" "), "etcdserver: mvcc: required revision has been compacted");
    }
}
