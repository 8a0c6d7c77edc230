//! A tiny deterministic generator (splitmix64) for fault draws, generated
//! scenarios and synthetic hashes: the same seed always gives the same run,
//! without pulling in a random-number crate.

/// One splitmix64 step: a well-mixed 64-bit value from any input.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in `[0, 1)` from a seed and a position in a stream.
pub fn unit(seed: u64, stream: u64, index: u64) -> f64 {
    let bits = mix(seed ^ mix(stream.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ mix(index)));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A sequential splitmix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `len` lowercase hex digits.
    pub fn hex(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 16);
        while out.len() < len {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(len);
        out
    }
}

/// `len` lowercase hex digits derived from `key` alone.
pub fn hex_of(key: u64, len: usize) -> String {
    SplitMix::new(mix(key)).hex(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_unit_draws_stay_in_range() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        for i in 0..1000 {
            let u = unit(1, 2, i);
            assert!((0.0..1.0).contains(&u));
        }
        let mean = (0..10_000).map(|i| unit(3, 0, i)).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn hex_has_the_requested_length_and_alphabet() {
        let h = hex_of(42, 40);
        assert_eq!(h.len(), 40);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(hex_of(42, 40), h);
        assert_ne!(hex_of(43, 40), h);
    }
}
