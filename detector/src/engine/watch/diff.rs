//! Lines added and removed between two versions of a text file: the longest common
//! subsequence of lines, after the common head and tail are set aside. Past a size where that
//! costs too much, lines are compared as multisets (what was added and removed, without
//! moves).
use std::collections::HashMap;

use crate::output::alert::LineDiff;

/// Table cells the longest-common-subsequence comparison may use (each 4 bytes).
const CELLS_MAX: usize = 4_000_000;

/// The lines of `new` not in `old` and of `old` not in `new`, at most `max` of each.
pub fn lines(old: &[String], new: &[String], max: usize) -> LineDiff {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old, new) = (&old[head..], &new[head..]);
    let tail = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old, new) = (&old[..old.len() - tail], &new[..new.len() - tail]);
    let (added, removed) = if old.len().saturating_mul(new.len()) <= CELLS_MAX {
        lcs(old, new)
    } else {
        multiset(old, new)
    };
    let truncated = added.len() > max || removed.len() > max;
    LineDiff {
        added: added.into_iter().take(max).cloned().collect(),
        removed: removed.into_iter().take(max).cloned().collect(),
        truncated,
    }
}

fn lcs<'a>(old: &'a [String], new: &'a [String]) -> (Vec<&'a String>, Vec<&'a String>) {
    let (n, m) = (old.len(), new.len());
    // len[i][j]: the longest common subsequence of old[i..] and new[j..].
    let w = m + 1;
    let mut len = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i * w + j] = if old[i] == new[j] {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if old[i] == new[j] {
            i += 1;
            j += 1;
        } else if len[(i + 1) * w + j] >= len[i * w + j + 1] {
            removed.push(&old[i]);
            i += 1;
        } else {
            added.push(&new[j]);
            j += 1;
        }
    }
    removed.extend(&old[i..]);
    added.extend(&new[j..]);
    (added, removed)
}

fn multiset<'a>(old: &'a [String], new: &'a [String]) -> (Vec<&'a String>, Vec<&'a String>) {
    let mut count: HashMap<&str, i64> = HashMap::new();
    for l in old {
        *count.entry(l).or_default() += 1;
    }
    let mut added = Vec::new();
    for l in new {
        let c = count.entry(l).or_default();
        if *c > 0 {
            *c -= 1;
        } else {
            added.push(l);
        }
    }
    let mut removed = Vec::new();
    for l in old {
        if let Some(c) = count.get_mut(l.as_str()) {
            if *c > 0 {
                *c -= 1;
                removed.push(l);
            }
        }
    }
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn added_removed_and_moved_lines() {
        let d = lines(
            &v("a\nb\nc\n"),
            &v("a\nb\nc\nauth sufficient pam_succeed_if.so uid >= 0\n"),
            10,
        );
        assert_eq!(d.added, ["auth sufficient pam_succeed_if.so uid >= 0"]);
        assert!(d.removed.is_empty() && !d.truncated);
        let d = lines(&v("a\nb\nc"), &v("b\na\nc"), 10);
        assert_eq!(d.added.len() + d.removed.len(), 2, "{d:?}");
        let d = lines(&v("a\nx\nc"), &v("a\ny\nc"), 10);
        assert_eq!((d.added, d.removed), (v("y"), v("x")));
        let d = lines(&[], &v("1\n2\n3"), 2);
        assert_eq!(d.added, v("1\n2"));
        assert!(d.truncated);
    }

    #[test]
    fn large_files_compare_as_multisets() {
        let old: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
        let mut new = old.clone();
        new.reverse();
        new.push("extra".into());
        let d = lines(&old, &new, 10);
        assert_eq!(d.added, ["extra"]);
        assert!(d.removed.is_empty());
    }
}
