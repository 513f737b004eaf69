//! Generated inputs for the parsers' invariant checks: the stable-toolchain stand-in for
//! the fuzz targets in `fuzz/`, run by `make test`. Seeded, so a failure reproduces. The
//! examples are the fuzz targets' seeds (`fuzz/seeds/<target>/`) and the pieces spliced
//! in are their libFuzzer dictionaries (`fuzz/dicts/<target>.dict`): one set of inputs
//! for both.

use std::path::PathBuf;

/// How many inputs each parser's check runs over in `make test`.
pub const INPUTS: usize = 20_000;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `target`'s seeds: inputs its parser accepts.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("seeds").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a seed").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} holds no seed", dir.display());
    paths.iter().map(|p| std::fs::read(p).expect("a seed")).collect()
}

/// `target`'s dictionary entries, unescaped as libFuzzer reads them (`\"`, `\\`, `\xNN`).
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let path = fuzz_dir().join("dicts").join(format!("{target}.dict"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let quoted = line.strip_prefix('"').and_then(|l| l.strip_suffix('"'));
            let body = quoted.unwrap_or_else(|| panic!("{}: not a quoted entry: {line}", path.display()));
            let mut out = Vec::with_capacity(body.len());
            let mut bytes = body.bytes();
            while let Some(b) = bytes.next() {
                if b != b'\\' {
                    out.push(b);
                    continue;
                }
                match bytes.next() {
                    Some(b'x') => {
                        let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                        let hex = std::str::from_utf8(&hex).expect("hex");
                        out.push(u8::from_str_radix(hex, 16).expect("a \\xNN escape"));
                    }
                    Some(escaped) => out.push(escaped),
                    None => panic!("{}: a trailing backslash", path.display()),
                }
            }
            out
        })
        .collect()
}

/// Runs `check` (which holds its parser's invariants and says whether the input was
/// accepted) over [`INPUTS`] inputs made from `target`'s seeds and dictionary, after
/// checking that every seed is accepted, so the mutations start from inputs that reach
/// past the first refusal.
pub fn check_target(target: &str, mut check: impl FnMut(&[u8]) -> bool) {
    let (seeds, dictionary) = (seeds(target), dictionary(target));
    for (i, seed) in seeds.iter().enumerate() {
        assert!(check(seed), "{target}: seed {} is refused", i + 1);
    }
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let dictionary: Vec<&[u8]> = dictionary.iter().map(Vec::as_slice).collect();
    let longest = check_generated(&seeds, &dictionary, INPUTS, |data| {
        check(data);
    });
    assert!(
        longest > 16 * 1024,
        "{target}: no input reached the length bounds ({longest} bytes)"
    );
}

/// Calls `check` on `count` inputs, each one of `examples` (inputs the parser accepts)
/// with up to four mutations — a byte changed, a piece of `fragments` (shapes the parser
/// looks for: field names, odd values) spliced in, a byte repeated into a run of 2^k ± 1
/// (up to 16 KiB: past every length bound our parsers hold, 512-byte codes and 8 KiB
/// bodies included), a range cut out, the tail cut off — so the checks reach both what is
/// accepted and every way of refusing it. Returns the longest input made.
fn check_generated(examples: &[&[u8]], fragments: &[&[u8]], count: usize, mut check: impl FnMut(&[u8])) -> usize {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        // xorshift64: enough to spread inputs, and the same on every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pick = |n: u64, len: usize| usize::try_from(n % len.max(1) as u64).unwrap_or(0);
    let mut longest = 0;
    for _ in 0..count {
        let mut data = examples[pick(next(), examples.len())].to_vec();
        for _ in 0..pick(next(), 5) {
            let at = pick(next(), data.len() + 1);
            match next() % 5 {
                0 if at < data.len() => data[at] = next().to_le_bytes()[0],
                1 if !fragments.is_empty() => {
                    let piece = fragments[pick(next(), fragments.len())];
                    data.splice(at..at, piece.iter().copied());
                }
                2 => {
                    // A run of the byte found there (a code's character grows the code).
                    let byte = data.get(at).copied().unwrap_or(b'a');
                    let run = (1usize << pick(next(), 15)) + pick(next(), 3);
                    data.splice(at..at, std::iter::repeat_n(byte, run.saturating_sub(1)));
                }
                3 => {
                    let end = (at + pick(next(), 8)).min(data.len());
                    data.drain(at..end);
                }
                _ => data.truncate(at),
            }
        }
        longest = longest.max(data.len());
        check(&data);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inputs reach every length a bound is set at: both sides of 512 bytes (a code)
    /// and of 8 KiB (a body), not only the seeds' few dozen bytes.
    #[test]
    fn generated_inputs_reach_both_sides_of_the_length_bounds() {
        let mut lengths = Vec::new();
        check_generated(&[b"code=4/0AbC"], &[b"&"], INPUTS, |data| lengths.push(data.len()));
        for bound in [512usize, 8 * 1024] {
            assert!(
                lengths.iter().any(|&n| n > bound && n < bound + 64),
                "just over {bound}"
            );
            assert!(
                lengths.iter().any(|&n| n <= bound && n + 64 > bound),
                "just under {bound}"
            );
        }
    }
}
