//! What the fuzz drivers under `tests/` share (`scripts/fuzz`): this crate is never shipped;
//! the product crates carry no fuzz code.
//!
//! The fuzz loops' random numbers: xorshift64*, seeded from `FUZZ_SEED` or the clock, so a
//! failing run can be replayed exactly.

pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % (n.max(1) as u64)).unwrap_or(0)
    }
}
