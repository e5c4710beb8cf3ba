//! Which key and value the `i`-th request of a run uses. Pure functions of the
//! request's index, so any client may take any index and a run is reproducible;
//! nothing here does I/O.

/// Digits of the sequence number a `watch` put carries at the front of its value.
pub const SEQ_DIGITS: usize = 8;

/// A key space of `size` keys written as zero-padded decimals of `width` bytes.
#[derive(Debug, Clone, Copy)]
pub struct KeySpace {
    pub size: u64,
    pub width: usize,
    pub sequential: bool,
}

/// splitmix64: a well-mixed 64-bit hash, so "random" keys need no RNG state
/// shared between clients.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in [0, 1) drawn from the request index, for choices like read or write.
pub fn unit_fraction(i: u64) -> f64 {
    // 53 bits: what an f64 mantissa holds exactly. Salted so it is independent
    // of the key choice for the same index.
    (mix64(i ^ 0x5bd1_e995) >> 11) as f64 / (1u64 << 53) as f64
}

impl KeySpace {
    /// The key number of request `i`.
    pub fn number(&self, i: u64) -> u64 {
        if self.sequential {
            i % self.size
        } else {
            mix64(i) % self.size
        }
    }

    /// Key number `n` as bytes. Callers check (flag validation) that the width holds
    /// every number of the space, so distinct numbers are distinct keys.
    pub fn key(&self, n: u64) -> Vec<u8> {
        format!("{:0width$}", n % self.size, width = self.width).into_bytes()
    }

    /// The key of request `i`.
    pub fn key_for(&self, i: u64) -> Vec<u8> {
        self.key(self.number(i))
    }
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Vec<u8> {
    vec![b'v'; size]
}

/// A value of `size` bytes (at least `SEQ_DIGITS`) that starts with `seq`.
pub fn value_with_seq(seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{:0width$}", seq % 10u64.pow(SEQ_DIGITS as u32), width = SEQ_DIGITS).into_bytes();
    v.resize(size.max(SEQ_DIGITS), b'v');
    v
}

/// The sequence number at the front of a `watch` put's value, if it has one.
pub fn seq_of_value(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..SEQ_DIGITS)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sequential_keys_walk_the_space_in_order() {
        let ks = KeySpace { size: 3, width: 4, sequential: true };
        let keys: Vec<_> = (0..5).map(|i| String::from_utf8(ks.key_for(i)).unwrap()).collect();
        assert_eq!(keys, ["0000", "0001", "0002", "0000", "0001"]);
    }

    #[test]
    fn random_keys_stay_in_the_space_and_cover_it() {
        let ks = KeySpace { size: 100, width: 8, sequential: false };
        let seen: HashSet<u64> = (0..10_000).map(|i| ks.number(i)).collect();
        assert!(seen.iter().all(|n| *n < 100));
        assert_eq!(seen.len(), 100, "10,000 draws over 100 keys should hit every key");
        assert!(ks.key_for(7).len() == 8);
        // Not the sequential walk.
        assert_ne!((0..10).map(|i| ks.number(i)).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_key_space_of_one_is_one_key() {
        let ks = KeySpace { size: 1, width: 8, sequential: false };
        assert!((0..100).all(|i| ks.key_for(i) == b"00000000"));
    }

    #[test]
    fn unit_fraction_is_in_range_and_spread() {
        let xs: Vec<f64> = (0..10_000).map(unit_fraction).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.9).count();
        assert!((8_700..9_300).contains(&below), "{below} of 10,000 below 0.9");
    }

    #[test]
    fn watch_values_carry_their_sequence_number() {
        let v = value_with_seq(42, 16);
        assert_eq!(v.len(), 16);
        assert_eq!(&v[..8], b"00000042");
        assert_eq!(seq_of_value(&v), Some(42));
        assert_eq!(value_with_seq(7, 2).len(), SEQ_DIGITS, "never shorter than the number");
        assert_eq!(seq_of_value(b"short"), None);
        assert_eq!(seq_of_value(b"vvvvvvvvvv"), None);
        assert_eq!(value(3), b"vvv");
    }
}
