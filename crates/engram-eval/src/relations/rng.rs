//! Randomness: the project's own splitmix64 (engram-model), so the dataset never changes with a dependency's
//! version.

pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The splitmix64 sequence: the state advances by the golden-ratio increment, the output is its mix.
    fn next(&mut self) -> u64 {
        let out = engram_model::splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in `0..n` (n > 0), by the high half of a 128-bit product (bias below 2^-50 for our n).
    pub(super) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    pub(super) fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    pub(super) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    pub(super) fn pick_ref<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub(super) fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }

    pub(super) fn shuffled<T: Clone>(&mut self, xs: &[T]) -> Vec<T> {
        let mut v = xs.to_vec();
        self.shuffle(&mut v);
        v
    }
}
