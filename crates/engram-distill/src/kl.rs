//! The distillation loss: forward KL(teacher ‖ student) at temperature `T`, times `T²` (Hinton et al.: keeps
//! the gradient's size independent of `T`).
//!
//! Two reductions ([`KlReduction`]):
//! - [`KlReduction::PerToken`]: the KL of each target token (a sum over the vocabulary), averaged over tokens;
//! - [`KlReduction::TorchMean`]: what SELF-PARAM's code computes with PyTorch's `kl_div(reduction="mean")`,
//!   which averages over *every element* of `[tokens, vocab]`: the same value divided by the vocabulary size
//!   (49,152 for SmolLM2). With Adam the scale mostly cancels, but not quite: gradient clipping and Adam's ε
//!   see a gradient ~5·10⁴ times smaller.
//!
//! The teacher may be cut to its top-k tokens plus one bucket for the remaining mass ([`TeacherDist`]). The KL
//! is then taken between the two distributions coarsened the same way (the student's mass outside the teacher's
//! top-k is its own bucket), which is still a true KL: ≥ 0, zero when they agree. Its gradient with respect to
//! the student's logit `z_j` is `T·(q_j − t_j)` with `t_j = p_j` inside the top-k and `t_j = p_rest·q_j/q_rest`
//! outside: the rest mass is spread over the other tokens in the student's own proportions.
//!
//! [`divergence_loss`] generalises it the way TRL's `SDFTTrainer`/`GKDTrainer` do with `distillation_alpha`
//! (`beta`): α = 0 is this forward KL, α = 1 the reverse KL(student ‖ teacher) (mode-seeking: the student puts
//! its mass where the teacher's is, rather than covering all of it), and 0 < α < 1 the generalised
//! Jensen–Shannon divergence `α·KL(p ‖ m) + (1−α)·KL(q ‖ m)` with `m = α·p + (1−α)·q` (which, like TRL's,
//! vanishes as α → 0: the endpoints are the two KLs, not its limits). On the bucketed
//! distributions, with `g_b = ∂D/∂q_b`, the gradient is `∂D/∂z_j = q_j·(g_{b(j)} − Σ_b q_b·g_b)/T`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DistillError;

/// How the per-token KL values become one loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlReduction {
    /// The sum over the vocabulary for each token, averaged over the tokens.
    #[default]
    PerToken,
    /// PyTorch's `kl_div(reduction="mean")` (SELF-PARAM's code): also divided by the vocabulary size.
    TorchMean,
}

impl KlReduction {
    /// `per-token` or `torch-mean`.
    pub fn parse(s: &str) -> Result<Self, DistillError> {
        match s {
            "per-token" => Ok(Self::PerToken),
            "torch-mean" => Ok(Self::TorchMean),
            other => Err(DistillError::option(
                "kl-reduction",
                other,
                "expected per-token or torch-mean",
            )),
        }
    }

    /// The name [`KlReduction::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerToken => "per-token",
            Self::TorchMean => "torch-mean",
        }
    }

    /// The factor on the mean per-token KL.
    fn factor(self, vocab: usize) -> f64 {
        match self {
            Self::PerToken => 1.0,
            Self::TorchMean => 1.0 / vocab.max(1) as f64,
        }
    }
}

/// The teacher's distribution at one target position (already at the distillation temperature): its top-k
/// tokens with their probabilities and the probability left over, or the whole vocabulary (`ids` empty,
/// `probs` one entry per token, `rest` 0).
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherDist {
    /// The kept token ids, in increasing order (empty: the whole vocabulary).
    pub ids: Vec<u32>,
    /// Their probabilities at temperature `T` (with `ids` empty, one per vocabulary token).
    pub probs: Vec<f32>,
    /// Probability mass of the tokens not in `ids` (0 for the whole vocabulary).
    pub rest: f32,
}

impl TeacherDist {
    /// `softmax(logits / temperature)`, kept whole (`top_k` `None`, or at least the vocabulary) or cut to the
    /// `top_k` most likely tokens.
    pub fn from_logits(logits: &[f32], temperature: f32, top_k: Option<usize>) -> Self {
        let probs = softmax_f64(logits, temperature);
        match top_k {
            Some(k) if k < logits.len() => {
                let mut order: Vec<u32> = (0..logits.len() as u32).collect();
                let by_prob = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]);
                if k > 0 {
                    order.select_nth_unstable_by(k - 1, by_prob);
                }
                let mut ids = order[..k].to_vec();
                ids.sort_unstable();
                let kept: f64 = ids.iter().map(|&i| probs[i as usize]).sum();
                Self {
                    probs: ids.iter().map(|&i| probs[i as usize] as f32).collect(),
                    ids,
                    rest: (1.0 - kept).max(0.0) as f32,
                }
            }
            _ => Self {
                ids: Vec::new(),
                probs: probs.iter().map(|&p| p as f32).collect(),
                rest: 0.0,
            },
        }
    }

    /// Whether it covers the whole vocabulary.
    pub fn is_dense(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes it occupies (for the cache's memory report).
    pub fn bytes(&self) -> usize {
        self.ids.len() * 4 + self.probs.len() * 4 + 4
    }
}

fn softmax_f64(logits: &[f32], temperature: f32) -> Vec<f64> {
    let t = temperature as f64;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut e: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - max) / t).exp())
        .collect();
    let sum: f64 = e.iter().sum();
    e.iter_mut().for_each(|x| *x /= sum);
    e
}

/// The KL of one token: `row` holds the student's logits and is overwritten with `q − t` (the gradient of the
/// KL with respect to the logits divided by `T`, before any scaling). Returns KL(p ‖ q) at temperature `T`.
fn token_kl(teacher: &TeacherDist, row: &mut [f32], temperature: f32) -> f64 {
    let t = temperature as f64;
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    // In place, no scratch row (this runs for every target token of every step): one pass for the sum,
    // one that reads each logit and overwrites it with its gradient.
    let e = |z: f32| ((z as f64 - max) / t).exp();
    let sum: f64 = row.iter().map(|&z| e(z)).sum();
    let log_sum = sum.ln();
    // log q_j = (z_j − max)/T − ln(sum)
    let log_q = |z: f32| (z as f64 - max) / t - log_sum;
    if teacher.is_dense() {
        let mut kl = 0f64;
        for (x, &p) in row.iter_mut().zip(&teacher.probs) {
            let p = p as f64;
            if p > 0.0 {
                kl += p * (p.ln() - log_q(*x));
            }
            *x = (e(*x) / sum - p) as f32;
        }
        return kl;
    }
    let mut in_top = 0f64;
    let mut kl = 0f64;
    // The top-k's own q, kept before the row is overwritten.
    let q_top: Vec<f64> = teacher
        .ids
        .iter()
        .zip(&teacher.probs)
        .map(|(&id, &p)| {
            let z = row[id as usize];
            in_top += e(z);
            let p = p as f64;
            if p > 0.0 {
                kl += p * (p.ln() - log_q(z));
            }
            e(z) / sum
        })
        .collect();
    // The rest bucket, from the exponentials outside the top-k rather than 1 − Σ top-k: no cancellation when
    // the top-k holds nearly all the mass.
    let q_rest = ((sum - in_top) / sum).max(f64::MIN_POSITIVE);
    let p_rest = teacher.rest as f64;
    if p_rest > 0.0 {
        kl += p_rest * (p_rest.ln() - q_rest.ln());
    }
    let outside = 1.0 - p_rest / q_rest;
    for x in row.iter_mut() {
        *x = (e(*x) / sum * outside) as f32;
    }
    for ((&id, &p), q) in teacher.ids.iter().zip(&teacher.probs).zip(q_top) {
        row[id as usize] = (q - p as f64) as f32;
    }
    kl
}

/// One token's divergence at `alpha` (see the module notes) between the teacher and the student's logits in
/// `row`, which is overwritten with `q_j·(g_{b(j)} − ḡ)` (the gradient divided by `T`, before any scaling), as
/// [`token_kl`] does for α = 0.
fn token_divergence(teacher: &TeacherDist, row: &mut [f32], temperature: f32, alpha: f64) -> f64 {
    let t = temperature as f64;
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e = |z: f32| ((z as f64 - max) / t).exp();
    let sum: f64 = row.iter().map(|&z| e(z)).sum();
    // The buckets: each teacher token (every token when dense), then the rest.
    let (p, q): (Vec<f64>, Vec<f64>) = if teacher.is_dense() {
        teacher
            .probs
            .iter()
            .zip(row.iter())
            .map(|(&p, &z)| (p as f64, e(z) / sum))
            .unzip()
    } else {
        let (mut p, mut q): (Vec<f64>, Vec<f64>) = teacher
            .ids
            .iter()
            .zip(&teacher.probs)
            .map(|(&id, &p)| (p as f64, e(row[id as usize]) / sum))
            .unzip();
        let in_top: f64 = q.iter().sum();
        p.push(teacher.rest as f64);
        q.push((1.0 - in_top).max(0.0));
        (p, q)
    };
    let tiny = f64::MIN_POSITIVE;
    let (d, g): (f64, Vec<f64>) = if alpha >= 1.0 {
        // Reverse KL(q ‖ p): g_b = ln q_b − ln p_b (+1, which cancels against ḡ).
        let g: Vec<f64> = q
            .iter()
            .zip(&p)
            .map(|(&q, &p)| q.max(tiny).ln() - p.max(tiny).ln())
            .collect();
        (q.iter().zip(&g).map(|(q, g)| q * g).sum(), g)
    } else {
        // Generalised JSD: g_b = (1 − α)·ln(q_b / m_b).
        let m: Vec<f64> = p
            .iter()
            .zip(&q)
            .map(|(&p, &q)| alpha * p + (1.0 - alpha) * q)
            .collect();
        let kl = |a: &[f64]| -> f64 {
            a.iter()
                .zip(&m)
                .filter(|(a, _)| **a > 0.0)
                .map(|(a, m)| a * (a.ln() - m.max(tiny).ln()))
                .sum()
        };
        let d = alpha * kl(&p) + (1.0 - alpha) * kl(&q);
        let g = q
            .iter()
            .zip(&m)
            .map(|(&q, &m)| (1.0 - alpha) * (q.max(tiny).ln() - m.max(tiny).ln()))
            .collect();
        (d, g)
    };
    let g_bar: f64 = q.iter().zip(&g).map(|(q, g)| q * g).sum();
    if teacher.is_dense() {
        for (x, g) in row.iter_mut().zip(&g) {
            *x = (e(*x) / sum * (g - g_bar)) as f32;
        }
    } else {
        let rest = g[g.len() - 1] - g_bar;
        for x in row.iter_mut() {
            *x = (e(*x) / sum * rest) as f32;
        }
        for ((&id, qb), gb) in teacher.ids.iter().zip(&q).zip(&g) {
            row[id as usize] = (qb * (gb - g_bar)) as f32;
        }
    }
    d
}

/// The loss over `n` tokens and its gradient with respect to the student's logits.
pub struct KlOutput {
    /// `T² · mean KL` (divided by the vocabulary for [`KlReduction::TorchMean`]).
    pub loss: f64,
    /// `[n, vocab]`, row-major: d loss / d student logit.
    pub grad: Vec<f32>,
}

/// The loss of student logits `student` (`[n, vocab]`, row-major, consumed: it becomes the gradient) against
/// one teacher distribution per row.
pub fn kl_loss(
    teachers: &[&TeacherDist],
    student: Vec<f32>,
    vocab: usize,
    temperature: f32,
    reduction: KlReduction,
) -> Result<KlOutput, DistillError> {
    divergence_loss(teachers, student, vocab, temperature, reduction, 0.0)
}

/// [`kl_loss`] at any `alpha` in `[0, 1]`: 0 the forward KL, 1 the reverse KL, between them the generalised
/// JSD (the module notes say how); `T²`-scaled and reduced the same way.
pub fn divergence_loss(
    teachers: &[&TeacherDist],
    mut student: Vec<f32>,
    vocab: usize,
    temperature: f32,
    reduction: KlReduction,
    alpha: f32,
) -> Result<KlOutput, DistillError> {
    if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
        return Err(DistillError::option(
            "distillation-alpha",
            alpha,
            "must be in [0, 1] (0 forward KL, 1 reverse KL, between them JSD)",
        ));
    }
    if vocab == 0 || !student.len().is_multiple_of(vocab) {
        return Err(DistillError::Shape(format!(
            "{} student logits are not rows of vocabulary size {vocab}",
            student.len()
        )));
    }
    let n = student.len() / vocab;
    if n != teachers.len() {
        return Err(DistillError::Shape(format!(
            "{n} student rows but {} teacher distributions",
            teachers.len()
        )));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(DistillError::option(
            "kl-temperature",
            temperature,
            "must be a positive number",
        ));
    }
    for (i, t) in teachers.iter().enumerate() {
        let bad_id = t.ids.iter().find(|&&id| id as usize >= vocab);
        let wrong_len = if t.is_dense() {
            t.probs.len() != vocab
        } else {
            t.probs.len() != t.ids.len()
        };
        if bad_id.is_some() || wrong_len {
            return Err(DistillError::Shape(format!(
                "teacher distribution {i} does not fit vocabulary size {vocab}"
            )));
        }
    }
    if n == 0 {
        return Ok(KlOutput {
            loss: 0.0,
            grad: student,
        });
    }
    let per_token: Vec<f64> = student
        .par_chunks_mut(vocab)
        .zip(teachers.par_iter())
        .map(|(row, t)| {
            if alpha == 0.0 {
                token_kl(t, row, temperature)
            } else {
                token_divergence(t, row, temperature, alpha as f64)
            }
        })
        .collect();
    let factor = reduction.factor(vocab);
    let t = temperature as f64;
    let loss = t * t * factor * per_token.iter().sum::<f64>() / n as f64;
    // d(T² KL)/dz = T² · (q − t)/T.
    let scale = (t * factor / n as f64) as f32;
    student.par_iter_mut().for_each(|g| *g *= scale);
    if !loss.is_finite() {
        return Err(DistillError::Shape(format!(
            "the loss is {loss}: non-finite logits"
        )));
    }
    Ok(KlOutput {
        loss,
        grad: student,
    })
}

/// The plain loss for downstream code: KL(softmax(teacher/T) ‖ softmax(student/T)) · T², both `[n, vocab]`
/// logits, row-major, with its gradient with respect to the student's logits.
pub fn kl_divergence_logits(
    teacher: &[f32],
    student: &[f32],
    vocab: usize,
    temperature: f32,
    reduction: KlReduction,
) -> Result<KlOutput, DistillError> {
    if vocab == 0 || teacher.len() != student.len() || !teacher.len().is_multiple_of(vocab) {
        return Err(DistillError::Shape(format!(
            "teacher ({}) and student ({}) logits must be the same whole rows of vocabulary size {vocab}",
            teacher.len(),
            student.len()
        )));
    }
    let dists: Vec<TeacherDist> = teacher
        .chunks(vocab)
        .map(|row| TeacherDist::from_logits(row, temperature, None))
        .collect();
    let refs: Vec<&TeacherDist> = dists.iter().collect();
    kl_loss(&refs, student.to_vec(), vocab, temperature, reduction)
}

/// The same loss on Burn tensors (`[n, vocab]` each), differentiable with respect to `student` through Burn's
/// autodiff; the teacher is detached. For code that keeps everything on the device.
pub fn kl_divergence(
    teacher: burn::tensor::Tensor<2>,
    student: burn::tensor::Tensor<2>,
    temperature: f32,
    reduction: KlReduction,
) -> burn::tensor::Tensor<1> {
    use burn::tensor::activation::{log_softmax, softmax};
    let [n, vocab] = student.dims();
    let t = temperature as f64;
    let teacher = teacher.detach().div_scalar(t);
    let p = softmax(teacher.clone(), 1);
    let log_p = log_softmax(teacher, 1);
    let log_q = log_softmax(student.div_scalar(t), 1);
    let scale = t * t * reduction.factor(vocab) / n.max(1) as f64;
    (p * (log_p - log_q)).sum().mul_scalar(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor, TensorData};
    use proptest::prelude::*;

    /// KL · T² computed directly in f64 from the definitions.
    fn direct(teacher: &[f32], student: &[f32], vocab: usize, t: f64) -> f64 {
        let sm = |row: &[f32]| -> Vec<f64> {
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 / t).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        };
        let rows = teacher.len() / vocab;
        let mut total = 0.0;
        for r in 0..rows {
            let p = sm(&teacher[r * vocab..(r + 1) * vocab]);
            let q = sm(&student[r * vocab..(r + 1) * vocab]);
            total += p
                .iter()
                .zip(&q)
                .map(|(p, q)| if *p > 0.0 { p * (p / q).ln() } else { 0.0 })
                .sum::<f64>();
        }
        t * t * total / rows as f64
    }

    fn logits(n: usize, vocab: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (
            proptest::collection::vec(-8.0f32..8.0, n * vocab),
            proptest::collection::vec(-8.0f32..8.0, n * vocab),
        )
    }

    proptest! {
        #[test]
        fn nonnegative_and_matches_f64((t, s) in logits(3, 11), temp in 0.5f32..3.0) {
            let out = kl_divergence_logits(&t, &s, 11, temp, KlReduction::PerToken).unwrap();
            prop_assert!(out.loss >= 0.0);
            let want = direct(&t, &s, 11, temp as f64);
            prop_assert!((out.loss - want).abs() <= 1e-5 * (1.0 + want), "{} vs {}", out.loss, want);
            let mean = kl_divergence_logits(&t, &s, 11, temp, KlReduction::TorchMean).unwrap();
            prop_assert!((mean.loss * 11.0 - out.loss).abs() <= 1e-9 * (1.0 + out.loss));
        }

        #[test]
        fn zero_for_identical_distributions((t, _) in logits(4, 9), temp in 0.5f32..3.0, shift in -5.0f32..5.0) {
            // A constant shift of the logits is the same distribution.
            let s: Vec<f32> = t.iter().map(|x| x + shift).collect();
            let out = kl_divergence_logits(&t, &s, 9, temp, KlReduction::PerToken).unwrap();
            prop_assert!(out.loss.abs() < 1e-5, "{}", out.loss);
            prop_assert!(out.grad.iter().all(|g| g.abs() < 1e-5));
        }

        /// Cutting the teacher to its top-k gives a KL between coarsened distributions: never negative, never
        /// above the full KL (the log-sum inequality), equal to it with k = vocabulary.
        #[test]
        fn top_k_is_a_lower_bound((t, s) in logits(2, 13), k in 1usize..13) {
            let full = kl_divergence_logits(&t, &s, 13, 1.0, KlReduction::PerToken).unwrap().loss;
            let dists: Vec<TeacherDist> = t.chunks(13).map(|r| TeacherDist::from_logits(r, 1.0, Some(k))).collect();
            let refs: Vec<&TeacherDist> = dists.iter().collect();
            let cut = kl_loss(&refs, s.clone(), 13, 1.0, KlReduction::PerToken).unwrap().loss;
            prop_assert!(cut >= -1e-9 && cut <= full + 1e-5, "{cut} vs {full}");
            let all: Vec<TeacherDist> = t.chunks(13).map(|r| TeacherDist::from_logits(r, 1.0, Some(13))).collect();
            let refs: Vec<&TeacherDist> = all.iter().collect();
            let same = kl_loss(&refs, s, 13, 1.0, KlReduction::PerToken).unwrap().loss;
            prop_assert!((same - full).abs() < 1e-5 * (1.0 + full));
        }
    }

    /// Central finite differences of the loss against the analytic gradient, dense and top-k.
    #[test]
    fn gradient_matches_finite_differences() {
        let vocab = 7;
        let teacher: Vec<f32> = (0..2 * vocab)
            .map(|i| ((i * 37 % 11) as f32) * 0.4 - 2.0)
            .collect();
        let student: Vec<f32> = (0..2 * vocab)
            .map(|i| ((i * 53 % 13) as f32) * 0.3 - 1.5)
            .collect();
        for (top_k, temp) in [(None, 1.0f32), (None, 2.0), (Some(3), 1.0), (Some(2), 1.5)] {
            for reduction in [KlReduction::PerToken, KlReduction::TorchMean] {
                let dists: Vec<TeacherDist> = teacher
                    .chunks(vocab)
                    .map(|r| TeacherDist::from_logits(r, temp, top_k))
                    .collect();
                let refs: Vec<&TeacherDist> = dists.iter().collect();
                let loss = |s: &[f32]| {
                    kl_loss(&refs, s.to_vec(), vocab, temp, reduction)
                        .unwrap()
                        .loss
                };
                let grad = kl_loss(&refs, student.clone(), vocab, temp, reduction)
                    .unwrap()
                    .grad;
                let h = 1e-3f32;
                for j in 0..student.len() {
                    let mut up = student.clone();
                    up[j] += h;
                    let mut down = student.clone();
                    down[j] -= h;
                    let numeric = (loss(&up) - loss(&down)) / (2.0 * h as f64);
                    let tol = 2e-3 * (numeric.abs() + reduction.factor(vocab) * 1e-2);
                    assert!(
                        (numeric - grad[j] as f64).abs() < tol,
                        "top_k {top_k:?} T {temp} {reduction:?} logit {j}: numeric {numeric} analytic {}",
                        grad[j]
                    );
                }
            }
        }
    }

    /// The Burn-tensor loss has the host loss's value and, through autodiff, its gradient.
    #[test]
    fn tensor_loss_matches_host_loss() {
        let ad = Device::flex().autodiff();
        let (n, vocab) = (3, 17);
        let teacher: Vec<f32> = (0..n * vocab)
            .map(|i| ((i * 7919 % 100) as f32) / 20.0 - 2.5)
            .collect();
        let student: Vec<f32> = (0..n * vocab)
            .map(|i| ((i * 104729 % 100) as f32) / 25.0 - 2.0)
            .collect();
        for reduction in [KlReduction::PerToken, KlReduction::TorchMean] {
            let host = kl_divergence_logits(&teacher, &student, vocab, 2.0, reduction).unwrap();
            let t = Tensor::<2>::from_data(TensorData::new(teacher.clone(), [n, vocab]), &ad);
            let s = Tensor::<2>::from_data(TensorData::new(student.clone(), [n, vocab]), &ad)
                .require_grad();
            let loss = kl_divergence(t, s.clone(), 2.0, reduction);
            let value: f32 = loss.clone().inner().into_scalar();
            assert!(
                (value as f64 - host.loss).abs() < 1e-4 * (1.0 + host.loss),
                "{value} vs {}",
                host.loss
            );
            let grads = loss.backward();
            let g = s
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let max = g
                .iter()
                .zip(&host.grad)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let scale = host.grad.iter().map(|x| x.abs()).fold(0f32, f32::max);
            assert!(
                max <= 1e-4 * scale,
                "gradients differ by {max} (largest {scale})"
            );
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert!(kl_divergence_logits(&[0.0; 6], &[0.0; 4], 2, 1.0, KlReduction::PerToken).is_err());
        assert!(kl_divergence_logits(&[0.0; 6], &[0.0; 6], 4, 1.0, KlReduction::PerToken).is_err());
        assert!(kl_divergence_logits(&[0.0; 4], &[0.0; 4], 2, 0.0, KlReduction::PerToken).is_err());
        assert!(
            kl_divergence_logits(&[0.0; 4], &[f32::NAN; 4], 2, 1.0, KlReduction::PerToken).is_err()
        );
        let t = TeacherDist {
            ids: vec![9],
            probs: vec![1.0],
            rest: 0.0,
        };
        assert!(kl_loss(&[&t], vec![0.0; 4], 4, 1.0, KlReduction::PerToken).is_err());
        assert_eq!(
            KlReduction::parse("torch-mean").unwrap(),
            KlReduction::TorchMean
        );
        assert!(
            KlReduction::parse("mean")
                .unwrap_err()
                .to_string()
                .contains("`kl-reduction` = mean")
        );
    }

    /// The α-divergence between two distributions from its definition in f64: forward KL at 0, reverse KL at
    /// 1, TRL's generalised JSD between.
    fn alpha_div(p: &[f64], q: &[f64], a: f64) -> f64 {
        let kl = |x: &[f64], y: &[f64]| -> f64 {
            x.iter()
                .zip(y)
                .map(|(x, y)| if *x > 0.0 { x * (x / y).ln() } else { 0.0 })
                .sum()
        };
        if a <= 0.0 {
            return kl(p, q);
        }
        if a >= 1.0 {
            return kl(q, p);
        }
        let m: Vec<f64> = p
            .iter()
            .zip(q)
            .map(|(p, q)| a * p + (1.0 - a) * q)
            .collect();
        a * kl(p, &m) + (1.0 - a) * kl(q, &m)
    }

    /// The loss's value against `reference(student)` and its gradient against central differences of it.
    fn check(out: &KlOutput, student: &[f32], reference: &dyn Fn(&[f32]) -> f64, label: &str) {
        assert!(
            (out.loss - reference(student)).abs() < 1e-6,
            "{label}: {}",
            out.loss
        );
        for j in 0..student.len() {
            let h = 1e-3f32;
            let (mut up, mut down) = (student.to_vec(), student.to_vec());
            up[j] += h;
            down[j] -= h;
            let numeric = (reference(&up) - reference(&down)) / (2.0 * h as f64);
            assert!(
                (out.grad[j] as f64 - numeric).abs() < 1e-4,
                "{label}, logit {j}: {} vs {numeric}",
                out.grad[j]
            );
        }
    }

    /// Every α against the plain definition, value and gradient, on tiny rows: with the whole vocabulary, and
    /// with a top-2 teacher plus its rest bucket (whose reference is the divergence of the bucketed
    /// distributions).
    #[test]
    fn alpha_divergences_match_their_definitions() {
        let teacher = [1.5f32, -0.5, 0.25, 2.0, -1.0];
        let student = [0.3f32, 0.9, -0.7, 1.1, 0.0];
        let (vocab, t) = (teacher.len(), 1.5f32);
        let loss = |dist: &TeacherDist, s: &[f32], alpha: f32| {
            divergence_loss(&[dist], s.to_vec(), vocab, t, KlReduction::PerToken, alpha)
        };
        let dense = TeacherDist::from_logits(&teacher, t, None);
        let top = TeacherDist::from_logits(&teacher, t, Some(2));
        for alpha in [0.0f32, 0.25, 0.5, 1.0] {
            let a = alpha as f64;
            let whole = |s: &[f32]| {
                let p = softmax_f64(&teacher, t);
                (t * t) as f64 * alpha_div(&p, &softmax_f64(s, t), a)
            };
            check(
                &loss(&dense, &student, alpha).unwrap(),
                &student,
                &whole,
                &format!("α {alpha}"),
            );
            let bucketed = |s: &[f32]| {
                let q = softmax_f64(s, t);
                let mut qb: Vec<f64> = top.ids.iter().map(|&i| q[i as usize]).collect();
                qb.push(1.0 - qb.iter().sum::<f64>());
                let mut p: Vec<f64> = top.probs.iter().map(|&p| p as f64).collect();
                p.push(top.rest as f64);
                (t * t) as f64 * alpha_div(&p, &qb, a)
            };
            let label = format!("top-2 α {alpha}");
            check(
                &loss(&top, &student, alpha).unwrap(),
                &student,
                &bucketed,
                &label,
            );
        }
        // α = 0 is the forward KL bit for bit; out of range names the option; equal rows give 0 at every α.
        let a = kl_loss(&[&dense], student.to_vec(), vocab, t, KlReduction::PerToken).unwrap();
        let b = loss(&dense, &student, 0.0).unwrap();
        assert_eq!((a.loss, a.grad), (b.loss, b.grad));
        let e = loss(&dense, &student, 1.5).err().unwrap().to_string();
        assert!(e.contains("distillation-alpha"), "{e}");
        let same = TeacherDist::from_logits(&student, t, None);
        for alpha in [0.5f32, 1.0] {
            let out = loss(&same, &student, alpha).unwrap();
            assert!(
                out.loss.abs() < 1e-6 && out.grad.iter().all(|g| g.abs() < 1e-6),
                "α {alpha}: {} {:?}",
                out.loss,
                out.grad
            );
        }
    }
}
