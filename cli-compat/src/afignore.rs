//! `.afignore`, as af 0.3.22 applies it (`lib/cli/file_helper.rb`): one pattern a line, `#`
//! comments, `!` to take a file back, `dir/` for a directory and everything in it, `/x` for a
//! top-level name, and Ruby's `File.fnmatch` for the rest: a pattern without `/` is matched
//! against the whole relative path with `FNM_PATHNAME`, so `*.tmp` matches top-level files only,
//! as in af. `.git/` is always ignored.
//!
//! One deliberate difference: when a directory is ignored, so is everything inside it (af
//! copied its files anyway and then failed for want of the directory).

/// The patterns of one app directory.
#[derive(Clone, Debug)]
pub(crate) struct AfIgnore {
    patterns: Vec<String>,
}

impl AfIgnore {
    /// The patterns of `text` (a `.afignore`), plus `.git/`.
    pub(crate) fn new(text: &str) -> AfIgnore {
        let mut patterns: Vec<String> = text.split('\n').map(str::to_owned).collect();
        patterns.push(".git/".into());
        AfIgnore { patterns }
    }

    /// Whether the file at `relative` (no leading `/`) is left out.
    pub(crate) fn excludes(&self, relative: &str) -> bool {
        let mut exclude = false;
        for pattern in &self.patterns {
            if let Some(positive) = pattern.strip_prefix('!') {
                if matches(positive, relative) {
                    exclude = false;
                }
            } else {
                exclude = exclude || matches(pattern, relative);
            }
        }
        exclude
    }
}

/// af's `AppFogIgnore#match`.
fn matches(pattern: &str, filename: &str) -> bool {
    if pattern.trim().is_empty() || pattern.starts_with('#') || pattern.starts_with('!') {
        return false;
    }
    if let Some(dirname) = pattern.strip_suffix('/') {
        return filename == dirname
            || filename
                .strip_prefix(dirname)
                .is_some_and(|rest| rest.starts_with('/'));
    }
    if let Some(top) = pattern.strip_prefix('/') {
        let first = filename.split('/').next().unwrap_or("");
        return fnmatch(top, first, false);
    }
    if pattern.contains('/') {
        return fnmatch(pattern, filename, false);
    }
    fnmatch(pattern, filename, true)
}

/// Ruby's `File.fnmatch(pattern, string, flags)` with `FNM_PATHNAME` or no flags: `*`, `?`,
/// `[…]`, `\` escapes; a leading `.` (of the string, or of each segment with `FNM_PATHNAME`)
/// only matches a literal `.`; with `FNM_PATHNAME`, wildcards do not match `/` and `**/`
/// matches any number of directories.
pub(crate) fn fnmatch(pattern: &str, string: &str, pathname: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = string.chars().collect();
    if pathname {
        let p_segments: Vec<&[char]> = p.split(|c| *c == '/').collect();
        let s_segments: Vec<&[char]> = s.split(|c| *c == '/').collect();
        match_segments(&p_segments, &s_segments)
    } else {
        match_chars(&p, &s, true, false)
    }
}

fn match_segments(p: &[&[char]], s: &[&[char]]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((first, rest)) if *first == ['*', '*'] && !rest.is_empty() => {
            // `**/`: zero or more directories that are not hidden.
            let mut i = 0;
            loop {
                if match_segments(rest, &s[i..]) {
                    return true;
                }
                if i >= s.len() || s[i].first() == Some(&'.') {
                    return false;
                }
                i += 1;
            }
        }
        Some((first, rest)) => match s.split_first() {
            Some((segment, s_rest)) => {
                match_chars(first, segment, true, true) && match_segments(rest, s_rest)
            }
            None => false,
        },
    }
}

/// Wildcard matching of `p` against all of `s`; `period`: a leading `.` of `s` needs a literal.
fn match_chars(p: &[char], s: &[char], period: bool, pathname: bool) -> bool {
    if period && s.first() == Some(&'.') {
        let literal = match p.first() {
            Some('\\') => p.get(1) == Some(&'.'),
            Some('.') => true,
            _ => false,
        };
        if !literal {
            return false;
        }
    }
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '?' if !(pathname && s[si] == '/') => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = bracket(p, pi, s[si])
                        && matched
                        && !(pathname && s[si] == '/')
                    {
                        pi = next;
                        si += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c == s[si] && c != '?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        // Backtrack: let the last `*` take one more character (never a `/` with FNM_PATHNAME).
        match star {
            Some((star_p, star_s)) if !(pathname && s[star_s] == '/') => {
                pi = star_p + 1;
                si = star_s + 1;
                star = Some((star_p, star_s + 1));
            }
            _ => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A `[…]` class at `p[start]`: whether `c` is in it, and where the pattern goes on.
fn bracket(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(p.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut low = *p.get(i)?;
        if low == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if low == '\\' {
            i += 1;
            low = *p.get(i)?;
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
            let mut high = p[i + 2];
            let mut skip = 3;
            if high == '\\' {
                high = *p.get(i + 3)?;
                skip = 4;
            }
            if low <= c && c <= high {
                matched = true;
            }
            i += skip;
        } else {
            if low == c {
                matched = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_like_ruby() {
        assert!(!fnmatch("*.log", ".x.log", false));
        assert!(fnmatch("*", "a/b", false));
        assert!(!fnmatch("*", "a/b", true));
        assert!(fnmatch("**/*.js", "a/b/c.js", true));
        assert!(fnmatch("**/*.js", "c.js", true));
        assert!(!fnmatch("a*", "a/.b", true));
        assert!(fnmatch("a/*", "a/.b", false));
        assert!(fnmatch("*b", "a/.b", false));
        assert!(fnmatch("[a-c]x", "bx", false));
        assert!(!fnmatch("[!a-c]x", "bx", false));
        assert!(fnmatch("\\*x", "*x", false));
        assert!(fnmatch(".*", ".env", true));
        assert!(fnmatch("?.txt", "a.txt", true));
    }

    #[test]
    fn afignore_rules() {
        let ignore =
            AfIgnore::new("# comment\n\n*.tmp\nnode_modules/\n/build\ndocs/*.md\n!keep.tmp\n");
        assert!(ignore.excludes("x.tmp"));
        assert!(
            !ignore.excludes("sub/x.tmp"),
            "no `/`: matched on the whole path, as af"
        );
        assert!(!ignore.excludes("keep.tmp"));
        assert!(ignore.excludes("node_modules"));
        assert!(ignore.excludes("node_modules/a/b.js"));
        assert!(!ignore.excludes("node_modules_x"));
        assert!(ignore.excludes("build"));
        assert!(ignore.excludes("build/out.js"));
        assert!(ignore.excludes("docs/a.md"));
        assert!(ignore.excludes(".git"));
        assert!(ignore.excludes(".git/HEAD"));
        assert!(!ignore.excludes("server.js"));
    }
}
