//! The algebra of adapters on small random models and layers: a fresh adapter changes nothing, disabling gives
//! the base model, merging gives the unmerged outputs, several adapters sum, and the low-rank path's gradients
//! match finite differences.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use engram_formats::Architecture;
use engram_formats::testing::{Memory, tiny_config};
use engram_lora::{Adapters, LoraConfig, TargetModules};
use engram_model::{AdapterState, Device, Llama, Logits, LowRank, Projection, left_padded_batch};
use proptest::prelude::*;

fn tiny(arch: Architecture) -> Llama {
    Llama::load(
        &Memory::random(tiny_config(arch), 7),
        &Device::flex(),
        &mut |_, _| {},
    )
    .unwrap()
}

fn logits(model: &Llama) -> Vec<f32> {
    let seqs = vec![vec![3u32, 9, 27, 5, 11, 40], vec![8, 1, 63]];
    let batch = left_padded_batch(&seqs, 0, &model.device()).unwrap();
    model
        .forward(batch.input, None, Logits::All)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Gives adapter `name` non-zero B factors (a trained adapter), deterministically.
fn randomise_b(model: &mut Llama, name: &str, seed: u64) {
    let mut k = seed;
    model
        .visit_factors_mut(name, &mut |_, factor, p| {
            if factor == engram_lora::Factor::B {
                k += 1;
                let t = p.val();
                let shape = t.dims();
                let n = shape[0] * shape[1];
                let v: Vec<f32> = (0..n)
                    .map(|i| {
                        (((i as u64 * 2654435761 + k * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.2
                    })
                    .collect();
                *p = Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), &t.device()));
            }
        })
        .unwrap();
}

#[test]
fn fresh_adapter_changes_no_logit_and_disabled_is_the_base_model() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let mut m = tiny(arch);
        let base = logits(&m);
        let n = m.add_adapter("a", &LoraConfig::default(), 1).unwrap();
        assert_eq!(n, 2 * 7, "all seven projections of both layers");
        assert_eq!(
            logits(&m),
            base,
            "{arch:?}: B = 0 means no change, bit for bit"
        );
        randomise_b(&mut m, "a", 3);
        let adapted = logits(&m);
        assert!(
            max_rel_diff(&adapted, &base) > 1e-3,
            "a trained adapter changes the output"
        );
        assert_eq!(
            logits(&m.without_adapters().unwrap()),
            base,
            "disabled = base"
        );
        m.set_active_adapters(&[]).unwrap();
        assert_eq!(logits(&m), base, "none active = base");
        m.set_active_adapters(&["a"]).unwrap();
        assert_eq!(logits(&m), adapted, "re-activated");
    }
}

#[test]
fn merge_unmerge_and_several_adapters() {
    let mut m = tiny(Architecture::Llama);
    let base = logits(&m);
    let cfg_a = LoraConfig {
        r: 3,
        lora_alpha: 6.0,
        target_modules: TargetModules::List(vec!["q_proj".into(), "down_proj".into()]),
        ..LoraConfig::default()
    };
    let cfg_b = LoraConfig {
        r: 2,
        lora_alpha: 5.0,
        use_rslora: true,
        layers_to_transform: Some(vec![1]),
        ..LoraConfig::default()
    };
    assert_eq!(m.add_adapter("a", &cfg_a, 1).unwrap(), 4);
    assert_eq!(m.add_adapter("b", &cfg_b, 2).unwrap(), 7);
    assert!(matches!(
        m.add_adapter("a", &cfg_a, 1),
        Err(engram_lora::LoraError::DuplicateAdapter(_))
    ));
    randomise_b(&mut m, "a", 10);
    randomise_b(&mut m, "b", 20);
    let both = logits(&m);
    m.set_active_adapters(&["a"]).unwrap();
    let only_a = logits(&m);
    m.merge_adapter("a").unwrap();
    assert!(
        max_rel_diff(&logits(&m), &only_a) < 1e-5,
        "merged = unmerged"
    );
    assert!(
        m.without_adapters().is_err(),
        "a merged adapter cannot be switched off"
    );
    m.unmerge_adapter("a").unwrap();
    assert!(max_rel_diff(&logits(&m), &only_a) < 1e-5, "unmerged again");
    m.set_active_adapters(&[]).unwrap();
    assert!(
        max_rel_diff(&logits(&m), &base) < 1e-5,
        "unmerge restores the base weights"
    );
    m.set_active_adapters(&["a", "b"]).unwrap();
    assert!(
        max_rel_diff(&logits(&m), &both) < 1e-5,
        "both active again (weights rounded by unmerge)"
    );
    m.merge_and_unload().unwrap();
    assert!(m.adapter_names().is_empty());
    assert!(
        max_rel_diff(&logits(&m), &both) < 1e-5,
        "merge_and_unload keeps the output"
    );
}

#[test]
fn bad_options_are_refused_by_name() {
    let mut m = tiny(Architecture::Llama);
    let e = m
        .add_adapter(
            "x",
            &LoraConfig {
                layers_to_transform: Some(vec![5]),
                ..LoraConfig::default()
            },
            0,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("layers_to_transform") && e.contains('5'), "{e}");
    let e = m
        .add_adapter(
            "x",
            &LoraConfig {
                r: 0,
                ..LoraConfig::default()
            },
            0,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("`r`"), "{e}");
    assert!(m.set_active_adapters(&["nope"]).is_err());
    assert!(
        m.adapter_names().is_empty(),
        "nothing attached by failed calls"
    );
}

fn host_tensor(v: &[f32], shape: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
}

fn pseudo(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let z =
                (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D);
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn layer(d_in: usize, d_out: usize, rank: usize, scale: f64, seed: u64) -> Projection {
    let mut p = Projection::new(
        host_tensor(&pseudo(d_in * d_out, seed, 1.0), [d_in, d_out]),
        None,
    );
    p.adapters.push(LowRank {
        a: Param::from_tensor(host_tensor(
            &pseudo(d_in * rank, seed + 1, 1.0),
            [d_in, rank],
        )),
        b: Param::from_tensor(host_tensor(
            &pseudo(rank * d_out, seed + 2, 1.0),
            [rank, d_out],
        )),
        name: "t".into(),
        scale,
        dropout: 0.0,
        state: AdapterState::Active,
        dropout_seed: None,
    });
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn merged_equals_unmerged(
        d_in in 1usize..24, d_out in 1usize..24, rank in 1usize..9, alpha in 0.25f64..64.0,
        rows in 1usize..6, seed in 0u64..1000,
    ) {
        let scale = alpha / rank as f64;
        let mut p = layer(d_in, d_out, rank, scale, seed);
        let x = Tensor::<3>::from_data(
            TensorData::new(pseudo(rows * d_in, seed + 3, 2.0), [1, rows, d_in]),
            &Device::flex(),
        );
        let unmerged = p.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        prop_assert!(p.merge("t"));
        prop_assert!(!p.merge("t"), "merging twice is refused");
        let merged = p.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let tol = 1e-5 * (1.0 + scale as f32) * (d_in + rank) as f32;
        prop_assert!(max_rel_diff(&merged, &unmerged) < tol, "merged vs unmerged {}", max_rel_diff(&merged, &unmerged));
        prop_assert!(p.unmerge("t"));
        let again = p.forward(x).into_data().try_to_vec::<f32>().unwrap();
        prop_assert!(max_rel_diff(&again, &unmerged) < tol);
    }
}

#[test]
fn low_rank_gradients_match_finite_differences() {
    let (d_in, d_out, rank, rows) = (5, 4, 3, 6);
    let device = Device::flex();
    let x_host = pseudo(rows * d_in, 11, 2.0);
    let x = Tensor::<2>::from_data(TensorData::new(x_host.clone(), [rows, d_in]), &device);
    let base = layer(d_in, d_out, rank, 1.7, 5);
    let a0 = base.adapters[0]
        .a
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b0 = base.adapters[0]
        .b
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    // loss = sum(y²) is not linear in A or B, so the check sees the whole chain rule.
    let loss_at = |a: &[f32], b: &[f32]| -> f64 {
        let mut p = layer(d_in, d_out, rank, 1.7, 5);
        p.adapters[0].a = Param::from_tensor(host_tensor(a, [d_in, rank]));
        p.adapters[0].b = Param::from_tensor(host_tensor(b, [rank, d_out]));
        let y = p
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        y.iter().map(|v| (*v as f64) * (*v as f64)).sum()
    };
    let mut p = layer(d_in, d_out, rank, 1.7, 5);
    let a = Tensor::<2>::from_data(
        TensorData::new(a0.clone(), [d_in, rank]),
        &device.clone().autodiff(),
    )
    .require_grad();
    let b = Tensor::<2>::from_data(
        TensorData::new(b0.clone(), [rank, d_out]),
        &device.clone().autodiff(),
    )
    .require_grad();
    p.adapters[0].a = Param::from_tensor(a.clone());
    p.adapters[0].b = Param::from_tensor(b.clone());
    let y = p.forward(x.clone());
    let grads = (y.clone() * y).sum().backward();
    let ga = a
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let gb = b
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(
        p.weight.val().grad(&grads).is_none(),
        "the frozen base weight gets no gradient"
    );
    let eps = 1e-2f32;
    let check = |which: &str, analytic: &[f32], at: &dyn Fn(usize, f32) -> f64| {
        for (i, g) in analytic.iter().enumerate() {
            let fd = (at(i, eps) - at(i, -eps)) / (2.0 * eps as f64);
            let err = (fd - *g as f64).abs() / fd.abs().max(1.0);
            assert!(
                err < 2e-3,
                "{which}[{i}]: autodiff {g}, finite difference {fd}"
            );
        }
    };
    check("A", &ga, &|i, d| {
        let mut a = a0.clone();
        a[i] += d;
        loss_at(&a, &b0)
    });
    check("B", &gb, &|i, d| {
        let mut b = b0.clone();
        b[i] += d;
        loss_at(&a0, &b)
    });
}

/// A tiny llama whose every linear layer has an output width that is a multiple of the quantisation block.
fn tiny_blocked() -> Llama {
    let config = engram_formats::ModelConfig {
        hidden_size: 64,
        intermediate_size: 128,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        ..tiny_config(Architecture::Llama)
    };
    Llama::load(&Memory::random(config, 7), &Device::flex(), &mut |_, _| {}).unwrap()
}

#[test]
fn a_q8_base_tracks_f32_and_adapters_merge_over_it() {
    use engram_model::BaseWeights;
    let mut m = tiny_blocked();
    let f32_logits = logits(&m);
    let held = |m: &Llama| -> u64 {
        m.projections()
            .iter()
            .map(|(_, p)| p.weight_bytes() as u64)
            .sum()
    };
    let f32_bytes = held(&m);
    assert_eq!(m.set_base_weights(BaseWeights::Q8), 14, "all 2 x 7 layers");
    // What the memory check assumes is what the layers hold: 1 byte per weight + an f32 per 32.
    assert_eq!(f32_bytes - held(&m), {
        let c = m.config();
        engram_model::weight_bytes(c, BaseWeights::F32)
            - engram_model::weight_bytes(c, BaseWeights::Q8)
    });
    assert_eq!(held(&m) * 32, f32_bytes * 9);
    assert!(m.projections().iter().all(|(_, p)| p.is_quantized()));
    assert_eq!(m.set_base_weights(BaseWeights::Q8), 0, "already quantised");
    let q8_logits = logits(&m);
    let diff = max_rel_diff(&q8_logits, &f32_logits);
    // 8 bits per 32-weight block: each weight within 1/254 of its block's largest; through two random
    // layers that is a few percent of the largest logit (2.3% here). The real model's figures are in the bench.
    assert!(diff > 0.0 && diff < 5e-2, "q8 logits off by {diff}");

    // An adapter over the quantised base: merging gives the unmerged outputs and leaves that layer f32.
    m.add_adapter("a", &LoraConfig::default(), 1).unwrap();
    randomise_b(&mut m, "a", 3);
    let unmerged = logits(&m);
    assert!(max_rel_diff(&unmerged, &q8_logits) > 1e-3);
    m.merge_adapter("a").unwrap();
    assert!(m.projections().iter().all(|(_, p)| !p.is_quantized()));
    assert!(max_rel_diff(&logits(&m), &unmerged) < 1e-5);
}

#[test]
fn adapter_gradients_over_a_q8_base_are_those_over_its_f32_values() {
    use engram_model::BaseWeights;
    let (d_in, d_out, rank, rows) = (8, 64, 3, 5);
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(
        TensorData::new(pseudo(rows * d_in, 11, 2.0), [rows, d_in]),
        &device,
    );
    let grads_of = |p: &mut Projection| -> (Vec<f32>, Vec<f32>, bool) {
        let tracked = |t: Tensor<2>| Tensor::<2>::from_data(t.into_data(), &device).require_grad();
        let a = tracked(p.adapters[0].a.val());
        let b = tracked(p.adapters[0].b.val());
        p.adapters[0].a = Param::from_tensor(a.clone());
        p.adapters[0].b = Param::from_tensor(b.clone());
        let y = p.forward(x.clone());
        let grads = (y.clone() * y).sum().backward();
        let v = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        (
            v(a.grad(&grads).unwrap()),
            v(b.grad(&grads).unwrap()),
            p.weight.val().grad(&grads).is_none(),
        )
    };
    let mut q = layer(d_in, d_out, rank, 2.0, 5);
    assert!(q.quantize_weight(BaseWeights::Q8));
    // The same layer with the quantised weight's values stored as plain f32.
    let mut f = layer(d_in, d_out, rank, 2.0, 5);
    f.weight = Param::from_tensor(q.weight_f32()).set_require_grad(false);
    let (qa, qb, q_frozen) = grads_of(&mut q);
    let (fa, fb, _) = grads_of(&mut f);
    assert!(q_frozen, "the quantised base weight gets no gradient");
    assert!(max_rel_diff(&qa, &fa) < 1e-6 && max_rel_diff(&qb, &fb) < 1e-6);
    assert!(qa.iter().any(|g| *g != 0.0));
    // A width the block does not divide stays f32.
    assert!(!layer(4, 48 + 8, 2, 1.0, 1).quantize_weight(BaseWeights::Q8));
    assert_eq!("Q8".parse::<BaseWeights>().unwrap(), BaseWeights::Q8);
    assert!(
        "q4".parse::<BaseWeights>()
            .unwrap_err()
            .to_string()
            .contains("f32 (dense, in the compute dtype) or q8")
    );
}
