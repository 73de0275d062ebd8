use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn replacer(pairs: &[(&str, &str)]) -> StreamReplacer {
    StreamReplacer::new(
        pairs
            .iter()
            .map(|(from, to)| (from.as_bytes().to_vec(), to.as_bytes().to_vec()))
            .collect(),
    )
    .unwrap()
}

/// Streams `input` cut at `cuts` (sorted offsets); returns every emitted piece.
fn run(mut replacer: StreamReplacer, input: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([input.len()].iter()) {
        pieces.push(replacer.push(&input[at..cut]));
        at = cut;
    }
    pieces.push(replacer.finish());
    pieces
}

fn joined(pieces: &[Bytes]) -> Vec<u8> {
    pieces.iter().flat_map(|p| p.iter().copied()).collect()
}

/// The whole-input answer, from the automaton crate's own replace.
fn reference(pairs: &[(Vec<u8>, Vec<u8>)], input: &[u8]) -> Vec<u8> {
    let pairs: Vec<_> = pairs.iter().filter(|(from, _)| !from.is_empty()).collect();
    if pairs.is_empty() {
        return input.to_vec();
    }
    let searcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(pairs.iter().map(|(from, _)| from))
        .unwrap();
    let tos: Vec<_> = pairs.iter().map(|(_, to)| to.as_slice()).collect();
    searcher.replace_all_bytes(input, &tos)
}

type Pairs = &'static [(&'static str, &'static str)];

#[test]
fn replaces_as_a_table() {
    let cases: [(Pairs, &str, &str); 7] = [
        (&[("secret", "X")], "a secret b secret", "a X b X"),
        (
            &[("abc", "1"), ("abcd", "2"), ("bc", "3")],
            "abcd abc xbc",
            "2 1 x3",
        ),
        (&[("aa", "b")], "aaaaa", "bba"),
        (&[("", "never")], "text", "text"),
        (&[], "text", "text"),
        (&[("x", "")], "axbxc", "abc"),
        (&[("same", "1"), ("same", "2")], "same", "1"),
    ];
    for (pairs, input, want) in cases {
        let got = joined(&run(replacer(pairs), input.as_bytes(), &[]));
        assert_eq!(String::from_utf8(got).unwrap(), want, "{pairs:?} {input:?}");
    }
}

#[test]
fn every_split_point_and_one_byte_chunks() {
    let input = b"head sk-live-1234567890 mid sk-live-1234567890tail sk-live-";
    let want = b"head <K> mid <K>tail sk-live-";
    for cut in 0..=input.len() {
        let got = joined(&run(
            replacer(&[("sk-live-1234567890", "<K>")]),
            input,
            &[cut],
        ));
        assert_eq!(got, want, "cut at {cut}");
    }
    for a in 0..=input.len() {
        for b in a..=input.len() {
            let got = joined(&run(
                replacer(&[("sk-live-1234567890", "<K>")]),
                input,
                &[a, b],
            ));
            assert_eq!(got, want, "cuts at {a}, {b}");
        }
    }
    let bytes: Vec<usize> = (1..input.len()).collect();
    let pieces = run(replacer(&[("sk-live-1234567890", "<K>")]), input, &bytes);
    assert_eq!(joined(&pieces), want);
    // The value never leaves in any piece, not even a prefix of it.
    for piece in &pieces {
        assert!(!piece.windows(8).any(|w| w == b"sk-live-1"), "{piece:?}");
    }
}

#[test]
fn holds_back_only_what_may_still_match() {
    let mut replacer = replacer(&[("world", "W"), ("wxyz", "V")]);
    assert_eq!(replacer.push(b"hello wor"), Bytes::from_static(b"hello "));
    assert_eq!(replacer.push(b"ld! w"), Bytes::from_static(b"W! "));
    assert_eq!(replacer.push(b"q"), Bytes::from_static(b"wq"));
    assert_eq!(
        replacer.push(b"data: {}\n\n"),
        Bytes::from_static(b"data: {}\n\n")
    );
    assert_eq!(replacer.replaced(), 1);
    assert_eq!(replacer.finish(), Bytes::new());
}

#[test]
fn finish_releases_an_unfinished_tail() {
    let mut replacer = replacer(&[("secret", "X")]);
    assert_eq!(replacer.push(b"a secr"), Bytes::from_static(b"a "));
    assert_eq!(replacer.finish(), Bytes::from_static(b"secr"));
}

#[test]
fn randomized_matches_whole_input_replace() {
    let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
    for round in 0..2000 {
        let pattern_count = rng.random_range(1..5);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..pattern_count)
            .map(|_| {
                let len = rng.random_range(1..7);
                let from = (0..len).map(|_| b"abc"[rng.random_range(0..3)]).collect();
                let to = (0..rng.random_range(0..4))
                    .map(|_| b"XYZ"[rng.random_range(0..3)])
                    .collect();
                (from, to)
            })
            .collect();
        let input: Vec<u8> = (0..rng.random_range(0..60))
            .map(|_| b"abcd"[rng.random_range(0..4)])
            .collect();
        let mut cuts: Vec<usize> = (0..rng.random_range(0..8))
            .map(|_| rng.random_range(0..=input.len()))
            .collect();
        cuts.sort_unstable();
        let streamer = StreamReplacer::new(pairs.clone()).unwrap();
        let got = joined(&run(streamer, &input, &cuts));
        assert_eq!(
            got,
            reference(&pairs, &input),
            "round {round}: {pairs:?} {input:?} {cuts:?}"
        );
    }
}

#[test]
fn debug_shows_no_pattern() {
    let mut replacer = replacer(&[("hunter2-secret", "<K>")]);
    let _ = replacer.push(b"x hunter2-sec");
    let text = format!("{replacer:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("pending_len: 11"), "{text}");
}
