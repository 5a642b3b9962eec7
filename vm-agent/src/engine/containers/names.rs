//! Container names: validation and Docker-style random names (`adjective_scientist`).

const ADJECTIVES: [&str; 24] = [
    "brave",
    "calm",
    "clever",
    "eager",
    "fervent",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "merry",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "witty",
    "zen",
];
const SURNAMES: [&str; 24] = [
    "babbage", "curie", "darwin", "einstein", "fermi", "galileo", "hopper", "hypatia", "kepler", "lamarr", "lovelace",
    "meitner", "newton", "noether", "pascal", "ritchie", "sagan", "shannon", "tesla", "thompson", "torvalds", "turing",
    "wozniak", "yalow",
];

/// Whether `name` matches Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A random `adjective_surname`.
pub fn random() -> String {
    let a = ADJECTIVES[rand::random_range(0..ADJECTIVES.len())];
    let s = SURNAMES[rand::random_range(0..SURNAMES.len())];
    format!("{a}_{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_docker() {
        assert!(valid("web-1.a_b"));
        assert!(!valid("-x"));
        assert!(!valid("a"));
        assert!(!valid("a b"));
        assert!(valid(&random()));
    }
}
